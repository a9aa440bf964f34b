// A minimal Parley for the browser test while the widget is not yet wired into the `parley` binary: the real
// store, bots, dialogs, client actions, widget service and HTTP server, one bot loaded from a scenario file and one
// widget channel. Prints {"url": "...", "channel": "..."} on one line once it listens; exits on SIGTERM/SIGINT.
//   widget_server --bot examples/demo-bot.json --data DIR [--port 0] [--allowed-domain HOST]...
#include <boost/asio.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <sstream>
#include <thread>

#include "bots/bots.h"
#include "bots/dialogs.h"
#include "clients/clients.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "http/http.h"
#include "widget/testing.h"
#include "widget/widget.h"

using namespace parley;
namespace asio = boost::asio;

int main(int argc, char** argv) {
    std::string bot_file;
    std::string data;
    std::uint16_t port = 0;
    boost::json::array domains;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string_view flag = argv[i];
        if (flag == "--bot") bot_file = argv[i + 1];
        else if (flag == "--data") data = argv[i + 1];
        else if (flag == "--port") port = static_cast<std::uint16_t>(std::stoi(argv[i + 1]));
        else if (flag == "--allowed-domain") domains.emplace_back(argv[i + 1]);
        else {
            std::cerr << "unknown flag " << flag << "\n";
            return 2;
        }
    }
    if (bot_file.empty() || data.empty()) {
        std::cerr << "usage: widget_server --bot FILE --data DIR [--port N] [--allowed-domain HOST]...\n";
        return 2;
    }
    std::ifstream in(bot_file);
    std::stringstream document;
    document << in.rdbuf();
    std::filesystem::create_directories(data);

    store::StoreOptions options;
    options.path = (std::filesystem::path(data) / "parley.db").string();
    auto all = clients::migrations();
    for (auto& m : bots::migrations()) all.push_back(m);
    for (auto& m : widget::migrations()) all.push_back(m);
    auto store = store::Store::open_sqlite(options, all);
    core::SystemClock clock;
    actions::ActionRegistry registry;
    actions::register_builtin_actions(registry);
    clients::register_actions(registry, *store, clock);
    bots::BotService bots(*store, clock, registry);
    bots::DialogService dialogs(bots, registry, nullptr, nullptr, nullptr);
    widget::testing::MapDirectory channels;
    auth::SecretKey key{};
    key.fill(42);
    widget::WidgetService service(*store, clock, channels, dialogs, registry, nullptr, key);

    http::Router router;
    widget::register_routes(router, service);
    asio::io_context io;
    auto work = asio::make_work_guard(io);
    core::Config config;
    core::Metrics metrics;
    http::Server server(io, config, router, metrics,
                        [](const http::Request&) -> std::optional<std::shared_ptr<const core::Principal>> {
                            return std::nullopt;
                        });
    port = server.start("127.0.0.1", port);
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) threads.emplace_back([&io] { io.run(); });
    service.start(io.get_executor());

    // The bot and its widget channel (kept across restarts on the same data dir).
    std::string bot_id = store::read_value(*store, [](store::Tx& tx) {
        auto row = tx.query_one("SELECT id FROM bots ORDER BY id LIMIT 1");
        return row ? row->text(0) : std::string();
    });
    if (bot_id.empty()) {
        bot_id = asio::co_spawn(io, bots.create("Demo", true), asio::use_future).get().id;
        asio::co_spawn(io, bots.put_scenario(bot_id, document.str(), {}, "browser test"), asio::use_future).get();
    }
    channels.put(widget::WidgetChannel{"demo-widget", bot_id, false});
    widget::WidgetSettings settings =
        widget::WidgetSettings::from_json(boost::json::object{{"title", "Demo shop"}, {"allowed_domains", domains}});
    asio::co_spawn(io, service.put_settings(bot_id, "demo-widget", settings), asio::use_future).get();

    std::cout << fmt::format(R"({{"url":"http://127.0.0.1:{}","channel":"demo-widget"}})", port) << std::endl;

    asio::signal_set signals(io, SIGTERM, SIGINT);
    std::promise<void> stop;
    signals.async_wait([&stop](auto, int) { stop.set_value(); });
    stop.get_future().wait();
    service.stop();
    service.wait_stopped();
    std::promise<void> stopped;
    server.stop([&] { stopped.set_value(); });
    stopped.get_future().wait();
    work.reset();
    io.stop();
    for (auto& t : threads) t.join();
    store->close();
    return 0;
}
