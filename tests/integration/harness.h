/// Black-box test harness: starts the real `parley` binary on port 0 with a temporary data dir and talks HTTP and
/// WebSocket to it, exactly as an external client would.
#pragma once

#include <boost/json.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace parley::testing {

/// A temporary directory removed on destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

/// One `parley serve` child process. Not thread-safe.
class ParleyProcess {
public:
    /// Starts `parley serve --listen 127.0.0.1:0 --data DATA_DIR ARGS...` with the admin bootstrap variables set
    /// (admin@example.com / admin-password-1) plus `env`, and waits for the listening line.
    explicit ParleyProcess(std::string data_dir, std::vector<std::string> args = {},
                           std::map<std::string, std::string> env = {});
    ~ParleyProcess();

    std::uint16_t port() const { return port_; }
    int pid() const { return pid_; }
    /// Sends `signal` and waits for exit; returns the exit status (or 128+signal when killed).
    int stop(int signal);
    /// Everything the process wrote to stdout/stderr so far (after stop(): everything).
    std::string output();

    static constexpr const char* kAdminEmail = "admin@example.com";
    static constexpr const char* kAdminPassword = "admin-password-1";

private:
    void read_available(int timeout_ms);
    int pid_ = -1;
    int out_fd_ = -1;
    std::uint16_t port_ = 0;
    std::string output_;
};

struct HttpResult {
    int status = 0;
    std::string body;
    std::map<std::string, std::string> headers;  ///< lower-case names
    boost::json::value json() const;             ///< parsed body (null when empty or not JSON)
};

/// A keep-alive HTTP/1.1 client for one server. Reconnects when the server closed the connection.
class HttpClient {
public:
    explicit HttpClient(std::uint16_t port);
    ~HttpClient();

    HttpResult request(const std::string& method, const std::string& target, const std::string& body = {},
                       const std::map<std::string, std::string>& headers = {});
    HttpResult get(const std::string& target) { return request("GET", target); }
    HttpResult post(const std::string& target, const boost::json::value& body) {
        return request("POST", target, boost::json::serialize(body));
    }
    HttpResult put(const std::string& target, const boost::json::value& body) {
        return request("PUT", target, boost::json::serialize(body));
    }
    HttpResult patch(const std::string& target, const boost::json::value& body) {
        return request("PATCH", target, boost::json::serialize(body));
    }
    HttpResult del(const std::string& target) { return request("DELETE", target); }

    /// Logs in and uses the token on every later request. Returns the login response.
    HttpResult login(const std::string& email, const std::string& password);
    void set_token(std::string token) { token_ = std::move(token); }
    const std::string& token() const { return token_; }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string token_;
};

/// A WebSocket client (text frames).
class WsClient {
public:
    WsClient(std::uint16_t port, const std::string& target, const std::string& token);
    ~WsClient();
    void send(const std::string& text);
    /// The next text frame, or nullopt on timeout / close.
    std::optional<std::string> receive(int timeout_ms);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Path of the built `parley` binary.
std::string parley_binary();

}  // namespace parley::testing
