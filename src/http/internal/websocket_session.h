/// The WebSocketSession behind http.h: a Beast websocket stream over the upgraded connection's socket.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <atomic>
#include <deque>
#include <memory>
#include <string>

#include "http/http.h"

namespace parley::http::internal {

struct WebSocketLimits {
    std::size_t max_message_bytes = 1 << 20;      ///< larger incoming messages close the socket (1009)
    std::size_t max_queued_frames = 1024;         ///< a consumer this far behind is disconnected
    std::size_t max_queued_bytes = 8 * 1024 * 1024;
};

/// One accepted WebSocket. Runs on the strand of its socket's executor: run(), the write loop, the callbacks.
/// send()/close()/close_going_away() may be called from any thread (they post to the strand); pending() reads
/// an atomic. Owned by shared_ptr: the connection coroutine, queued posts and the route's handler share it.
class WebSocketSessionImpl final : public WebSocketSession, public std::enable_shared_from_this<WebSocketSessionImpl> {
public:
    using Stream = boost::beast::websocket::stream<boost::asio::ip::tcp::socket>;

    WebSocketSessionImpl(boost::asio::ip::tcp::socket socket, WebSocketLimits limits);

    /// Answers the upgrade `request` (echoing `request_id`); false when the handshake failed. On the strand.
    boost::asio::awaitable<bool> accept(const boost::beast::http::request<boost::beast::http::string_body>& request,
                                        std::string request_id);
    /// Reads messages until the socket closes, calling on_message for each, then on_close once. On the strand.
    boost::asio::awaitable<void> run();

    void send(std::string text) override;
    /// send() of a text shared with other sockets. Any thread.
    void send_shared(std::shared_ptr<const std::string> text) override;
    /// Counts a frame broadcast is about to post (enqueue uncounts it when the socket is closing).
    void count_pending() { pending_.fetch_add(1, std::memory_order_relaxed); }
    /// Queues a frame; must run on the socket's executor (broadcast posts it there).
    void enqueue(std::shared_ptr<const std::string> text);
    /// The io_context this socket runs on when it runs on one directly (not through a strand), else null:
    /// broadcast batches per io_context only in that case.
    boost::asio::io_context* direct_context();
    void close() override;
    std::size_t pending() const override { return pending_.load(std::memory_order_relaxed); }

    /// Server shutdown: flush what is queued, then close with 1001 (going away). Any thread.
    void close_going_away();
    /// Drops the TCP connection at once (grace period over). On the strand.
    void abort();

private:
    void begin_close(boost::beast::websocket::close_code code);
    void start_writer();
    void write_next();
    void on_written(boost::system::error_code ec);
    void drop_queue();

    Stream ws_;
    WebSocketLimits limits_;
    boost::beast::flat_buffer read_buffer_;
    std::deque<std::shared_ptr<const std::string>> queue_;  // strand only
    std::size_t queued_bytes_ = 0;   // strand only
    std::atomic<std::size_t> pending_{0};
    bool writing_ = false;   // strand only: a write loop is running
    bool closing_ = false;   // strand only: no more sends; close after the queue drains
    bool finished_ = false;  // strand only: the read loop ended
    boost::beast::websocket::close_code close_code_ = boost::beast::websocket::close_code::normal;
};

}  // namespace parley::http::internal
