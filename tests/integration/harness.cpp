#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>

namespace parley::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

std::string parley_binary() {
    if (const char* env = std::getenv("PARLEY_BINARY")) return env;
    return PARLEY_BINARY_PATH;
}

TempDir::TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "parley-test-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

ParleyProcess::ParleyProcess(std::string data_dir, std::vector<std::string> args,
                             std::map<std::string, std::string> env) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
    std::vector<std::string> argv_storage = {parley_binary(), "serve", "--listen", "127.0.0.1:0", "--data", data_dir};
    for (auto& a : args) argv_storage.push_back(a);
    env.emplace("PARLEY_ADMIN_EMAIL", kAdminEmail);
    env.emplace("PARLEY_ADMIN_PASSWORD", kAdminPassword);
    env.emplace("PARLEY_LOG_LEVEL", "warn");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        dup2(pipe_fds[1], 1);
        dup2(pipe_fds[1], 2);
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
        std::vector<char*> argv;
        for (auto& a : argv_storage) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    close(pipe_fds[1]);
    out_fd_ = pipe_fds[0];
    fcntl(out_fd_, F_SETFL, O_NONBLOCK);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
        read_available(100);
        auto pos = output_.find("listening on http://127.0.0.1:");
        if (pos != std::string::npos) {
            auto start = pos + std::string("listening on http://127.0.0.1:").size();
            auto end = output_.find_first_not_of("0123456789", start);
            if (end != std::string::npos) {
                port_ = static_cast<std::uint16_t>(std::stoi(output_.substr(start, end - start)));
                return;
            }
        }
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("parley exited during start-up: " + output_);
        }
    }
    throw std::runtime_error("parley did not report its port: " + output_);
}

ParleyProcess::~ParleyProcess() {
    if (pid_ > 0) stop(SIGKILL);
    if (out_fd_ >= 0) close(out_fd_);
}

void ParleyProcess::read_available(int timeout_ms) {
    pollfd pfd{out_fd_, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) <= 0) return;
    char buffer[4096];
    while (true) {
        ssize_t n = read(out_fd_, buffer, sizeof buffer);
        if (n <= 0) break;
        output_.append(buffer, static_cast<std::size_t>(n));
    }
}

int ParleyProcess::stop(int signal) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal);
    int status = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (waitpid(pid_, &status, WNOHANG) == 0) {
        read_available(20);
        if (std::chrono::steady_clock::now() > deadline) {
            kill(pid_, SIGKILL);
            waitpid(pid_, &status, 0);
            break;
        }
    }
    read_available(0);
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

std::string ParleyProcess::output() {
    if (out_fd_ >= 0) read_available(0);
    return output_;
}

boost::json::value HttpResult::json() const {
    boost::system::error_code ec;
    auto v = boost::json::parse(body, ec);
    return ec ? boost::json::value() : v;
}

struct HttpClient::Impl {
    explicit Impl(std::uint16_t port) : port(port) {}
    void connect() {
        stream_ptr = std::make_unique<beast::tcp_stream>(io);
        stream_ptr->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
        connected = true;
    }
    std::uint16_t port;
    asio::io_context io;
    std::unique_ptr<beast::tcp_stream> stream_ptr;
    beast::flat_buffer buffer;
    bool connected = false;
};

HttpClient::HttpClient(std::uint16_t port) : impl_(std::make_unique<Impl>(port)) {}
HttpClient::~HttpClient() = default;

HttpResult HttpClient::request(const std::string& method, const std::string& target, const std::string& body,
                               const std::map<std::string, std::string>& headers) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (!impl_->connected) impl_->connect();
        bhttp::request<bhttp::string_body> req(bhttp::string_to_verb(method), target, 11);
        req.set(bhttp::field::host, "127.0.0.1");
        if (!token_.empty()) req.set(bhttp::field::authorization, "Bearer " + token_);
        if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
        for (auto& [k, v] : headers) req.set(k, v);
        req.body() = body;
        req.prepare_payload();
        boost::system::error_code ec;
        impl_->stream_ptr->expires_after(std::chrono::seconds(60));
        bhttp::write(*impl_->stream_ptr, req, ec);
        bhttp::response_parser<bhttp::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        // A server may answer early (413) and stop reading; its answer is still there to read.
        ec = {};
        bhttp::read(*impl_->stream_ptr, impl_->buffer, parser, ec);
        if (ec) {
            impl_->connected = false;
            impl_->buffer.clear();
            if (attempt == 0) continue;
            throw std::runtime_error("HTTP " + method + " " + target + " failed: " + ec.message());
        }
        auto res = parser.release();
        HttpResult out;
        out.status = static_cast<int>(res.result_int());
        out.body = std::move(res.body());
        for (auto& field : res) {
            std::string name(field.name_string());
            for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            out.headers[name] = std::string(field.value());
        }
        if (!res.keep_alive()) {
            impl_->connected = false;
            impl_->buffer.clear();
        }
        return out;
    }
    throw std::runtime_error("unreachable");
}

HttpResult HttpClient::login(const std::string& email, const std::string& password) {
    token_.clear();
    auto res = post("/api/v1/auth/login", {{"email", email}, {"password", password}});
    if (res.status == 200) token_ = std::string(res.json().at("token").as_string());
    return res;
}

struct WsClient::Impl {
    asio::io_context io;
    beast::websocket::stream<beast::tcp_stream> ws{io};
};

WsClient::WsClient(std::uint16_t port, const std::string& target, const std::string& token)
    : impl_(std::make_unique<Impl>()) {
    beast::get_lowest_layer(impl_->ws).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    impl_->ws.set_option(beast::websocket::stream_base::decorator([token](beast::websocket::request_type& req) {
        if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
    }));
    beast::get_lowest_layer(impl_->ws).expires_after(std::chrono::seconds(10));
    impl_->ws.handshake("127.0.0.1", target);
    beast::get_lowest_layer(impl_->ws).expires_never();
}

WsClient::~WsClient() {
    boost::system::error_code ec;
    beast::get_lowest_layer(impl_->ws).socket().close(ec);
}

void WsClient::send(const std::string& text) {
    impl_->ws.text(true);
    impl_->ws.write(asio::buffer(text));
}

std::optional<std::string> WsClient::receive(int timeout_ms) {
    beast::flat_buffer buffer;
    std::optional<std::string> out;
    bool done = false;
    impl_->ws.async_read(buffer, [&](boost::system::error_code ec, std::size_t) {
        done = true;
        if (!ec) out = beast::buffers_to_string(buffer.data());
    });
    impl_->io.restart();
    impl_->io.run_for(std::chrono::milliseconds(timeout_ms));
    if (!done) {
        beast::get_lowest_layer(impl_->ws).cancel();
        impl_->io.restart();
        impl_->io.run_for(std::chrono::milliseconds(500));
    }
    return out;
}

}  // namespace parley::testing
