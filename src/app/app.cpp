#include "app/app.h"

#include <sys/stat.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <future>
#include <iostream>
#include <thread>

#include "app/commands.h"
#include "actions/actions.h"
#include "auth/auth.h"
#include "bots/bots.h"
#include "bots/dialogs.h"
#include "bots/routes.h"
#include "bots/triggers.h"
#include "clients/clients.h"
#include "channels/channels.h"
#include "customdata/customdata.h"
#include "jail/jail.h"
#include "knowledge/knowledge.h"
#include "knowledge/openai.h"
#include "outbound/outbound.h"
#include "outbound/send_request.h"
#include "operator/operator.h"
#include "operator/sla.h"
#include "operator/tickets.h"
#include "webhooks/webhooks.h"
#include "widget/widget.h"
#include "auth/secret_key.h"
#include "auth/settings.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "events/events.h"
#include "http/http.h"
#include "store/store.h"

namespace parley::app {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kDatabaseFile = "parley.db";

std::vector<store::Migration> all_migrations() {
    std::vector<store::Migration> out;
    for (auto& m : auth::migrations()) out.push_back(m);
    for (auto& m : jail::migrations()) out.push_back(m);
    for (auto& m : customdata::migrations()) out.push_back(m);
    for (auto& m : channels::migrations()) out.push_back(m);
    for (auto& m : knowledge::migrations()) out.push_back(m);
    for (auto& m : clients::migrations()) out.push_back(m);
    for (auto& m : bots::migrations()) out.push_back(m);
    for (auto& m : operators::migrations()) out.push_back(m);
    for (auto& m : operators::ticket_migrations()) out.push_back(m);
    for (auto& m : operators::sla_migrations()) out.push_back(m);
    for (auto& m : webhooks::migrations()) out.push_back(m);
    for (auto& m : widget::migrations()) out.push_back(m);
    return out;
}

unsigned thread_count(const core::Config& config) {
    if (config.threads > 0) return config.threads;
    return std::max(1u, std::thread::hardware_concurrency());
}

void prepare_data_dir(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot create data dir '{}': {}", dir, ec.message()));
    ::chmod(dir.c_str(), 0700);
}

/// Instance settings as the scenario runtime reads them (`{{instance_settings.KEY}}`).
class ScenarioSettings final : public scenario::InstanceSettings {
public:
    explicit ScenarioSettings(const auth::InstanceSettings& settings) : settings_(settings) {}
    std::optional<json::value> get(std::string_view key) const override { return settings_.get(key); }

private:
    const auth::InstanceSettings& settings_;
};

constexpr std::string_view kDemoBotName = "Parley demo: support bot";

/// Action Jail's fetch() over the outbound client: the same SSRF guard and limits as action_send_request.
class OutboundFetcher final : public jail::Fetcher {
public:
    explicit OutboundFetcher(outbound::Client& client) : client_(client) {}
    void fetch(jail::FetchRequest request, std::function<void(jail::FetchResponse)> done) override {
        outbound::Request out;
        out.method = std::move(request.method);
        out.url = std::move(request.url);
        out.headers = std::move(request.headers);
        out.body = std::move(request.body);
        out.timeout_ms = std::max<std::int64_t>(1, request.timeout_ms);
        if (request.max_response_bytes) out.max_response_bytes = request.max_response_bytes;
        client_.send(std::move(out), [done = std::move(done)](outbound::Response r) {
            jail::FetchResponse response;
            response.status = r.status;
            response.url = r.url;
            for (auto& [name, value] : r.headers) response.headers.emplace_back(name, value);
            response.body = std::move(r.body);
            if (r.error) {
                std::string code = r.error->code == outbound::ErrorCode::kRefusedByGuard
                                       ? std::string(jail::kFetchRefusedByGuard)
                                       : std::string(outbound::error_code_name(r.error->code));
                response.error = jail::FetchError{std::move(code), r.error->message};
            }
            done(std::move(response));
        });
    }

private:
    outbound::Client& client_;
};

}  // namespace

extern const char* const kDemoBotDocument;  // examples/demo-bot.json, embedded at build time
extern const char* const kDemoFaqDocument;  // examples/demo-faq.md

struct App::Impl {
    explicit Impl(core::Config c) : config(std::move(c)), io(1) {
        prepare_data_dir(config.data_dir);
        store::StoreOptions options;
        options.path = (fs::path(config.data_dir) / kDatabaseFile).string();
        options.readers = config.db_readers ? config.db_readers : thread_count(config) + 2;
        db = store::Store::open_sqlite(options, all_migrations(), &metrics);

        secret_key = auth::load_or_create_secret_key(config.data_dir);
        settings = std::make_unique<auth::SettingsService>(*db, clock, secret_key);
        auth = std::make_unique<auth::AuthService>(*db, clock, *settings, auth::AuthOptions::from_config(config));
        hub = std::make_unique<events::EventHub>(10'000, &metrics);
        actions::register_builtin_actions(registry);
        clients::register_actions(registry, *db, clock);
        client_directory = std::make_unique<clients::ClientDirectory>(*db, clock, hub.get());
        scenario_settings = std::make_unique<ScenarioSettings>(*settings);
        bot_service = std::make_unique<bots::BotService>(*db, clock, registry);
        bots::DialogOptions dialog_options;
        dialog_options.step_limit = config.step_limit;
        dialog_options.action_timeout_ms = config.action_timeout_ms;
        dialog_options.record_runs = config.runs_retention_days > 0;
        dialogs = std::make_unique<bots::DialogService>(*bot_service, registry, scenario_settings.get(), hub.get(),
                                                        &metrics, dialog_options);
        triggers = std::make_unique<bots::TriggerService>(*bot_service, *dialogs);
        operator_service =
            std::make_unique<operators::OperatorService>(*db, clock, *dialogs, *triggers, hub.get(), settings.get());
        sla_service = std::make_unique<operators::SlaService>(*db, clock, *operator_service, hub.get(), &metrics);
        operators::StaffDirectory staff;
        staff.user_exists = [this](std::string_view id) {
            try {
                return auth->get_user(id).active;
            } catch (const core::NotFound&) {
                return false;
            }
        };
        staff.groups_of = [this](std::string_view user) { return operator_service->groups_of(user); };
        staff.members_of = [this](std::string_view group) { return operator_service->members_of(group); };
        tickets = std::make_unique<operators::TicketService>(*db, clock, *dialogs, hub.get(), std::move(staff));
        registry.add(operators::make_connect_action(*operator_service));
        outbound::ClientOptions outbound_options;
        outbound_options.allowlist = outbound::allowlist_from_settings(*settings);
        outbound_options.metrics = &metrics;
        outbound_client = std::make_unique<outbound::Client>(std::move(outbound_options));
        registry.add(outbound::make_send_request_action(*outbound_client));
        sandbox = std::make_unique<jail::Sandbox>(jail::JailOptions{}, std::make_shared<OutboundFetcher>(*outbound_client));
        jail_service = std::make_unique<jail::JailService>(*db, clock, *sandbox, &registry, [this] {
            json::object out;  // ctx.instanceSettings: the non-secret settings
            for (const auto& s : settings->list()) {
                if (!s.secret && s.value) out[s.key] = *s.value;
            }
            return out;
        });
        jail_service->load();
        custom_data = std::make_unique<customdata::CustomDataService>(*db, clock);
        customdata::register_actions(registry, *custom_data);
        llm = std::make_unique<knowledge::OpenAiChatClient>(*outbound_client);
        knowledge::KnowledgeOptions knowledge_options;
        knowledge_options.settings = settings.get();
        knowledge_options.llm = llm.get();
        knowledge_options.embedder = llm.get();          // vector search for bases with `embeddings` settings
        knowledge_options.http = outbound_client.get();  // URL sources
        // Folder sources may only name directories under this one (docs/configuration.md).
        knowledge_options.sync_root = (fs::path(config.data_dir) / "knowledge-sync").string();
        knowledge_service = std::make_unique<knowledge::KnowledgeService>(*db, clock, knowledge_options);
        // The operator copilot's knowledge snippets: the best passages of every base for the client's last words.
        operator_service->set_snippet_source([this](std::string_view text) {
            json::array out;
            for (const auto& hit : knowledge_service->snippets_for_dialog(text, 3)) {
                out.push_back(json::object{{"document", hit.document_name}, {"document_id", hit.document_id},
                                           {"heading", hit.heading}, {"text", hit.text}, {"score", hit.score}});
            }
            return out;
        });
        knowledge::register_actions(registry, *knowledge_service);
        channels::ChannelOptions channel_options;
        channel_options.public_base_url = config.base_url();
        // Email: attachments of inbound mail, and IMAP/SMTP hosts checked by the same SSRF guard as HTTP.
        channel_options.email_attachments_dir = (fs::path(config.data_dir) / "email-attachments").string();
        channel_options.transport_allowlist = outbound::allowlist_from_settings(*settings);
        channel_service = std::make_unique<channels::ChannelService>(*db, clock, *bot_service, *dialogs,
                                                                     *outbound_client, secret_key, channel_options);
        // Operator-panel webhooks: every published event is offered to the webhook service, which queues the
        // dialog events its subscriptions ask for and delivers them signed, with retries.
        webhook_service = std::make_unique<webhooks::WebhookService>(*db, clock, *outbound_client, secret_key);
        hub->add_listener([w = webhook_service.get()](std::uint64_t id, const std::string& type,
                                                      const std::string& text) { w->on_event(id, type, text); });
        widget_directory = std::make_unique<widget::RegistryDirectory<channels::ChannelService>>(*channel_service);
        widget::WidgetOptions widget_options;
        // File links posted into dialogs: the configured public URL, else the Host the visitor used.
        widget_options.public_base_url = config.public_url;
        widget_service = std::make_unique<widget::WidgetService>(*db, clock, *widget_directory, *dialogs, registry,
                                                                 hub.get(), secret_key, widget_options);

        router.add(http::Method::kGet, "/healthz", http::Access::open(),
                   [](http::Request&) -> asio::awaitable<http::Response> {
                       co_return http::Response::raw_json(R"({"status":"ok"})");
                   });
        router.add(http::Method::kGet, "/metrics", http::Access::open(),
                   [this](http::Request&) -> asio::awaitable<http::Response> {
                       co_return http::Response::text(metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
                   });
        auth::register_routes(router, *auth);
        events::register_routes(router, *hub);
        clients::register_routes(router, *client_directory);
        bots::register_routes(router, *bot_service, *dialogs, *triggers, registry);
        operators::register_routes(router, *operator_service);
        operators::register_ticket_routes(router, *tickets);
        operators::register_sla_routes(router, *sla_service);
        jail::register_routes(router, *jail_service);
        customdata::register_routes(router, *custom_data);
        channels::register_routes(router, *channel_service);
        widget::register_routes(router, *widget_service);
        knowledge::register_routes(router, *knowledge_service);
        webhooks::register_routes(router, *webhook_service);
    }

    /// `--demo`: the demo bot, created once (an existing bot with its name is left as the user changed it).
    asio::awaitable<void> load_demo() {
        if (!custom_data->find_model("complaints")) {
            // The demo bot saves complaints here (custom_modules__set).
            json::object spec = json::parse(R"({"name": "complaints", "fields": [
                {"name": "text", "type": "text", "required": true},
                {"name": "kind", "type": "select", "options": ["delivery", "quality"]},
                {"name": "phone", "type": "text"}]})").as_object();
            co_await custom_data->create_model(std::move(spec));
        }
        bool have_base = false;
        for (const auto& base : knowledge_service->list_bases()) have_base = have_base || base.name == "demo-faq";
        if (!have_base) {
            // The demo bot's AI fallback: agent "demo" over a small FAQ (built-in extractive answerer, no provider).
            json::object base_spec{{"name", "demo-faq"}};
            co_await knowledge_service->create_base(std::move(base_spec));
            knowledge::Upload upload{"demo-faq.md", "text/markdown", kDemoFaqDocument};
            std::string base_name = "demo-faq";
            co_await knowledge_service->add_document(std::move(base_name), std::move(upload));
            json::object agent_spec{{"name", "demo"},
                                    {"prompt", "Answer questions about the Parley Demo shop."},
                                    {"knowledge_bases", json::array{"demo-faq"}},
                                    {"model", json::object{}}};
            co_await knowledge_service->create_agent(std::move(agent_spec));
        }
        std::optional<std::string> next;
        for (const auto& bot : bot_service->list(std::string(kDemoBotName), std::nullopt, std::nullopt, 10, &next)) {
            if (bot.name == kDemoBotName) co_return;
        }
        // Arguments are named first: GCC 12 destroys class-type temporaries of a co_await expression twice.
        std::string name(kDemoBotName);
        bots::Bot bot = co_await bot_service->create(std::move(name), true);
        std::string document = kDemoBotDocument;
        bots::Author author;
        std::string note = "demo bot";
        auto put = co_await bot_service->put_scenario(bot.id, std::move(document), std::move(author), std::move(note));
        core::log_event(spdlog::level::info, "demo_bot_loaded",
                        fmt::format(R"("bot":{},"version":{})", core::json_quote(bot.id), put.version));
    }

    /// Scheduled triggers: checks every 20 seconds for schedules that are due.
    asio::awaitable<void> scheduler() {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        while (true) {
            try {
                co_await triggers->run_due(clock.now_ms());
            } catch (const std::exception& e) {
                core::log_event(spdlog::level::warn, "schedules_failed", fmt::format(R"("message":{})", core::json_quote(e.what())));
            }
            timer.expires_after(std::chrono::seconds(20));
            boost::system::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (ec) co_return;
        }
    }

    /// Dialogs left waiting for an action by a crash, then the hourly pruning of recorded runs.
    asio::awaitable<void> maintenance() {
        try {
            std::size_t resumed = co_await dialogs->recover();
            if (resumed) core::log_event(spdlog::level::info, "dialogs_recovered", fmt::format(R"("count":{})", resumed));
        } catch (const std::exception& e) {
            core::log_event(spdlog::level::err, "dialogs_recover_failed", fmt::format(R"("message":{})", core::json_quote(e.what())));
        }
        asio::steady_timer timer(co_await asio::this_coro::executor);
        while (config.runs_retention_days > 0) {
            try {
                std::int64_t cutoff = clock.now_ms() - std::int64_t{config.runs_retention_days} * 86'400'000;
                co_await dialogs->prune_runs(cutoff);
            } catch (const std::exception& e) {
                core::log_event(spdlog::level::warn, "runs_prune_failed", fmt::format(R"("message":{})", core::json_quote(e.what())));
            }
            timer.expires_after(std::chrono::hours(1));
            boost::system::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (ec) co_return;
        }
    }

    core::Config config;
    core::SystemClock clock;
    core::Metrics metrics;
    std::unique_ptr<store::Store> db;
    auth::SecretKey secret_key;
    std::unique_ptr<auth::SettingsService> settings;
    std::unique_ptr<auth::AuthService> auth;
    std::unique_ptr<events::EventHub> hub;
    std::unique_ptr<clients::ClientDirectory> client_directory;
    actions::ActionRegistry registry;
    std::unique_ptr<ScenarioSettings> scenario_settings;
    std::unique_ptr<bots::BotService> bot_service;
    std::unique_ptr<bots::DialogService> dialogs;
    std::unique_ptr<bots::TriggerService> triggers;
    std::unique_ptr<operators::OperatorService> operator_service;
    std::unique_ptr<operators::TicketService> tickets;
    std::unique_ptr<operators::SlaService> sla_service;
    std::unique_ptr<outbound::Client> outbound_client;
    std::unique_ptr<jail::Sandbox> sandbox;
    std::unique_ptr<jail::JailService> jail_service;
    std::unique_ptr<customdata::CustomDataService> custom_data;
    std::unique_ptr<knowledge::OpenAiChatClient> llm;
    std::unique_ptr<knowledge::KnowledgeService> knowledge_service;
    std::unique_ptr<channels::ChannelService> channel_service;
    std::unique_ptr<widget::RegistryDirectory<channels::ChannelService>> widget_directory;
    std::unique_ptr<widget::WidgetService> widget_service;
    std::unique_ptr<webhooks::WebhookService> webhook_service;
    http::Router router;
    asio::io_context io;  ///< background work, and the first thread's share of the connections
    std::vector<std::unique_ptr<asio::io_context>> workers;  ///< one per further thread, connections only
    std::unique_ptr<http::Server> server;
    std::vector<std::thread> threads;
};

App::App(core::Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}

App::~App() {
    if (impl_->widget_service) impl_->widget_service->stop();
    if (impl_->channel_service) impl_->channel_service->stop();
    if (impl_->webhook_service) impl_->webhook_service->stop();
    if (impl_->knowledge_service) impl_->knowledge_service->stop();
    if (impl_->sla_service) impl_->sla_service->stop();
    if (impl_->outbound_client) impl_->outbound_client->shutdown();
    if (!impl_->threads.empty()) {
        impl_->io.stop();
        for (auto& w : impl_->workers) w->stop();
        for (auto& t : impl_->threads) t.join();
    }
    impl_->server.reset();
    if (impl_->custom_data) impl_->custom_data->stop_indexer();  // its thread writes through the store
    if (impl_->db) impl_->db->close();
}

std::string App::bootstrap_admin() {
    const auto& c = impl_->config;
    std::string email = c.admin_email.empty() ? "admin@localhost" : c.admin_email;
    return impl_->auth->ensure_admin(email, c.admin_password).value_or("");
}

std::uint16_t App::start() {
    auto& d = *impl_;
    d.server = std::make_unique<http::Server>(d.io, d.config, d.router, d.metrics,
                                              d.auth->authenticator());
    // One io_context per thread: a connection stays on one thread (no strand, no cross-thread wake-up per
    // request). The first thread also runs the background work on `io`.
    const unsigned n = thread_count(d.config);
    std::vector<asio::io_context*> contexts{&d.io};
    for (unsigned i = 1; i < n; ++i) {
        d.workers.push_back(std::make_unique<asio::io_context>(1));
        contexts.push_back(d.workers.back().get());
    }
    d.server->set_connection_contexts(std::move(contexts));
    std::uint16_t port = d.server->start(d.config.listen_host, d.config.listen_port);
    if (d.config.demo) {
        // Before the listener answers anyone: the demo bot is there when `make run` prints its address.
        auto loaded = asio::co_spawn(d.io, d.load_demo(), asio::use_future);
        d.io.restart();
        while (loaded.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) d.io.run_one();
        loaded.get();
    }
    d.channel_service->start(d.io.get_executor());
    d.widget_service->start(d.io.get_executor());
    d.webhook_service->start(d.io.get_executor());
    asio::co_spawn(d.io, d.maintenance(), asio::detached);
    asio::co_spawn(d.io, d.sla_service->run(std::chrono::seconds(1)), asio::detached);  // SLA timers, idle timeouts
    asio::co_spawn(d.io, d.scheduler(), asio::detached);
    d.threads.emplace_back([&d] { d.io.run(); });
    for (auto& w : d.workers) {
        d.threads.emplace_back([&d, context = w.get()] {
            auto guard = asio::make_work_guard(*context);  // idle until the first connection arrives
            context->run();
        });
    }
    core::log_event(spdlog::level::info, "server_started",
                    fmt::format(R"("host":{},"port":{},"threads":{},"data":{})", core::json_quote(d.config.listen_host),
                                port, n, core::json_quote(d.config.data_dir)));
    return port;
}

void App::wait_for_signal() {
    auto& d = *impl_;
    std::promise<int> signalled;
    asio::signal_set signals(d.io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int number) {
        if (!ec) signalled.set_value(number);
    });
    int number = signalled.get_future().get();
    core::log_event(spdlog::level::info, "shutdown_started", fmt::format(R"("signal":{})", number));
    std::promise<void> drained;
    d.server->stop([&drained] { drained.set_value(); });
    drained.get_future().wait();
    d.widget_service->stop();
    d.channel_service->stop();
    d.webhook_service->stop();
    d.outbound_client->shutdown();  // cancels an in-flight getUpdates and webhook sends (their leases lapse)
    d.channel_service->wait_stopped();
    d.widget_service->wait_stopped();
    d.webhook_service->wait_stopped();
    d.knowledge_service->stop();
    d.sla_service->stop();
    d.io.stop();
    for (auto& w : d.workers) w->stop();
    for (auto& t : d.threads) t.join();
    d.threads.clear();
    d.custom_data->stop_indexer();
    d.db->close();
    core::log_event(spdlog::level::info, "shutdown_complete");
    spdlog::default_logger()->flush();
}

const http::Router& App::router() const { return impl_->router; }
store::Store& App::store() { return *impl_->db; }

std::string backup(const core::Config& config, const std::string& dest_dir) {
    fs::path source = fs::path(config.data_dir) / kDatabaseFile;
    if (!fs::exists(source)) throw std::runtime_error(fmt::format("no database at '{}'", source.string()));
    auto now = std::chrono::system_clock::now();
    std::string stamp = core::format_time(
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
    for (auto& ch : stamp) {
        if (ch == ':' || ch == '.') ch = '-';
    }
    fs::path folder = fs::path(dest_dir) / ("parley-backup-" + stamp);
    fs::create_directories(folder);
    ::chmod(folder.c_str(), 0700);
    store::StoreOptions options;
    options.path = source.string();
    options.readers = 1;
    auto db = store::Store::open_sqlite(options, all_migrations());
    db->backup((folder / kDatabaseFile).string());
    db->close();
    // The secret key travels with the copy: without it, encrypted settings could not be read back.
    for (const char* name : {"secret.key"}) {
        fs::path key = fs::path(config.data_dir) / name;
        if (fs::exists(key)) fs::copy_file(key, folder / name, fs::copy_options::overwrite_existing);
    }
    return folder.string();
}

int print_routes(const core::Config& base) {
    std::string pattern = (fs::temp_directory_path() / "parley-routes-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    json::array out;
    {
        core::Config config = base;
        config.data_dir = pattern;
        App app(config);
        for (const auto& route : app.router().routes()) {
            json::object access;
            switch (route->access.kind) {
                case http::Access::Kind::kPublic: access["kind"] = "public"; break;
                case http::Access::Kind::kSignedIn: access["kind"] = "signed_in"; break;
                case http::Access::Kind::kPermission:
                    access["kind"] = "permission";
                    access["module"] = route->access.module;
                    access["action"] = core::action_name(route->access.action);
                    break;
            }
            out.push_back(json::object{{"method", http::method_name(route->method)},
                                       {"pattern", route->pattern},
                                       {"access", access},
                                       {"websocket", static_cast<bool>(route->websocket)}});
        }
    }
    fs::remove_all(pattern);
    std::cout << json::serialize(out) << "\n";
    return 0;
}

}  // namespace parley::app
