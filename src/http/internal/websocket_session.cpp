#include "http/internal/websocket_session.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>
#include <algorithm>
#include <fmt/format.h>

#include "core/json.h"
#include "core/log.h"

namespace parley::http::internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

void log_callback_failure(std::string_view which, const char* what) {
    core::log_event(spdlog::level::err, "websocket_callback_failed",
                    fmt::format(R"("callback":{},"error":{})", core::json_quote(which), core::json_quote(what)));
}
}  // namespace

WebSocketSessionImpl::WebSocketSessionImpl(asio::ip::tcp::socket socket, WebSocketLimits limits)
    : ws_(std::move(socket)), limits_(limits) {
    // Handshake 30 s, idle 300 s; pings at half the idle time keep live peers open and find dead ones.
    auto timeout = websocket::stream_base::timeout::suggested(beast::role_type::server);
    timeout.keep_alive_pings = true;
    ws_.set_option(timeout);
    ws_.read_message_max(limits_.max_message_bytes);
    ws_.auto_fragment(false);
}

asio::awaitable<bool> WebSocketSessionImpl::accept(const beast::http::request<beast::http::string_body>& request,
                                                   std::string request_id) {
    ws_.set_option(websocket::stream_base::decorator(
        [id = std::move(request_id)](websocket::response_type& response) { response.set("X-Request-Id", id); }));
    auto [ec] = co_await ws_.async_accept(request, kTuple);
    co_return !ec;
}

asio::awaitable<void> WebSocketSessionImpl::run() {
    for (;;) {
        auto [ec, bytes] = co_await ws_.async_read(read_buffer_, kTuple);
        if (ec) break;
        if (on_message) {
            auto data = read_buffer_.cdata();
            try {
                on_message(std::string_view(static_cast<const char*>(data.data()), data.size()));
            } catch (const std::exception& e) {
                log_callback_failure("on_message", e.what());
            }
        }
        read_buffer_.consume(read_buffer_.size());
    }
    finished_ = true;
    closing_ = true;
    drop_queue();
    boost::system::error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
    auto on_close_callback = std::move(on_close);
    // Callbacks usually capture the session: clearing them breaks that cycle.
    on_message = nullptr;
    on_close = nullptr;
    if (on_close_callback) {
        try {
            on_close_callback();
        } catch (const std::exception& e) {
            log_callback_failure("on_close", e.what());
        }
    }
}

void WebSocketSessionImpl::send(std::string text) {
    send_shared(std::make_shared<const std::string>(std::move(text)));
}

void WebSocketSessionImpl::send_shared(std::shared_ptr<const std::string> text) {
    pending_.fetch_add(1, std::memory_order_relaxed);
    asio::post(ws_.get_executor(),
               [self = shared_from_this(), text = std::move(text)]() mutable { self->enqueue(std::move(text)); });
}

asio::io_context* WebSocketSessionImpl::direct_context() {
    auto executor = ws_.get_executor();
    auto* direct = executor.target<asio::io_context::executor_type>();
    return direct ? &direct->context() : nullptr;
}

void WebSocketSessionImpl::enqueue(std::shared_ptr<const std::string> text) {
    if (closing_) {
        pending_.fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    queued_bytes_ += text->size();
    queue_.push_back(std::move(text));
    if (queue_.size() > limits_.max_queued_frames || queued_bytes_ > limits_.max_queued_bytes) {
        core::log_event(spdlog::level::warn, "websocket_slow_consumer",
                        fmt::format(R"("queued_frames":{},"queued_bytes":{})", queue_.size(), queued_bytes_));
        abort();
        return;
    }
    start_writer();
}

void WebSocketSessionImpl::close() {
    asio::post(ws_.get_executor(), [self = shared_from_this()] { self->begin_close(websocket::close_code::normal); });
}

void WebSocketSessionImpl::close_going_away() {
    asio::post(ws_.get_executor(),
               [self = shared_from_this()] { self->begin_close(websocket::close_code::going_away); });
}

void WebSocketSessionImpl::begin_close(websocket::close_code code) {
    if (closing_) return;
    closing_ = true;
    close_code_ = code;
    start_writer();
}

void WebSocketSessionImpl::start_writer() {
    if (writing_) return;
    writing_ = true;
    write_next();
}

// The write chain uses completion callbacks rather than a coroutine per burst: a live event reaches thousands of
// sockets at once, and one coroutine frame per socket per event was measurable in the fan-out bench.
void WebSocketSessionImpl::write_next() {
    if (!queue_.empty() && !finished_) {
        ws_.text(true);
        ws_.async_write(asio::buffer(*queue_.front()),
                        [self = shared_from_this()](boost::system::error_code ec, std::size_t) { self->on_written(ec); });
        return;
    }
    writing_ = false;
    if (finished_) {
        drop_queue();
        return;
    }
    if (closing_ && ws_.is_open()) {
        writing_ = true;  // the close frame is the last write; nothing may start another
        ws_.async_close(close_code_, [self = shared_from_this()](boost::system::error_code) {});
    }
}

void WebSocketSessionImpl::on_written(boost::system::error_code ec) {
    if (ec) {
        writing_ = false;
        drop_queue();
        return;
    }
    if (!queue_.empty()) {
        queued_bytes_ -= queue_.front()->size();
        queue_.pop_front();
        pending_.fetch_sub(1, std::memory_order_relaxed);
    }
    write_next();
}

void WebSocketSessionImpl::abort() {
    closing_ = true;
    drop_queue();
    boost::system::error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
}

void WebSocketSessionImpl::drop_queue() {
    // The frame a running write loop is sending stays alive until that write completes (it owns the bytes).
    const std::size_t keep = writing_ && !queue_.empty() ? 1 : 0;
    const std::size_t dropped = queue_.size() - keep;
    pending_.fetch_sub(dropped, std::memory_order_relaxed);
    queue_.resize(keep);
    queued_bytes_ = keep ? queue_.front()->size() : 0;
}

}  // namespace parley::http::internal

namespace parley::http {

void broadcast(const std::vector<std::shared_ptr<WebSocketSession>>& sessions,
               std::shared_ptr<const std::string> text) {
    namespace asio = boost::asio;
    using internal::WebSocketSessionImpl;
    struct Batch {
        asio::io_context* context;
        std::vector<std::shared_ptr<WebSocketSessionImpl>> sessions;
    };
    std::vector<Batch> batches;  // one per io_context: a handful
    for (const auto& session : sessions) {
        auto impl = std::dynamic_pointer_cast<WebSocketSessionImpl>(session);
        auto* context = impl ? impl->direct_context() : nullptr;
        if (!context) {  // on a strand of a shared io_context (or not a socket of ours): one post each
            session->send_shared(text);
            continue;
        }
        auto batch = std::find_if(batches.begin(), batches.end(), [&](const Batch& b) { return b.context == context; });
        if (batch == batches.end()) batch = batches.insert(batches.end(), Batch{context, {}});
        batch->sessions.push_back(std::move(impl));
    }
    for (auto& batch : batches) {
        for (auto& impl : batch.sessions) impl->count_pending();
        asio::post(*batch.context, [sessions = std::move(batch.sessions), text] {
            for (const auto& impl : sessions) impl->enqueue(text);
        });
    }
}

}  // namespace parley::http
