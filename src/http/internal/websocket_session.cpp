#include "http/internal/websocket_session.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>
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
    pending_.fetch_add(1, std::memory_order_relaxed);
    asio::post(ws_.get_executor(),
               [self = shared_from_this(), text = std::move(text)]() mutable { self->enqueue(std::move(text)); });
}

void WebSocketSessionImpl::enqueue(std::string text) {
    if (closing_) {
        pending_.fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    queued_bytes_ += text.size();
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
    asio::co_spawn(ws_.get_executor(), [self = shared_from_this()]() { return self->write_loop(); }, asio::detached);
}

asio::awaitable<void> WebSocketSessionImpl::write_loop() {
    auto self = shared_from_this();
    bool failed = false;
    while (!queue_.empty() && !finished_) {
        ws_.text(true);
        auto [ec, bytes] = co_await ws_.async_write(asio::buffer(queue_.front()), kTuple);
        if (ec) {
            failed = true;
            break;
        }
        queued_bytes_ -= queue_.front().size();
        queue_.pop_front();
        pending_.fetch_sub(1, std::memory_order_relaxed);
    }
    writing_ = false;
    if (failed || finished_) {
        drop_queue();
        co_return;
    }
    if (closing_ && ws_.is_open()) {
        writing_ = true;  // the close frame is the last write; nothing may start another
        auto [ec] = co_await ws_.async_close(close_code_, kTuple);
        (void)ec;
    }
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
    queued_bytes_ = keep ? queue_.front().size() : 0;
}

}  // namespace parley::http::internal
