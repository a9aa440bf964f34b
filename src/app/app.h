/// The application: the one place that knows every module. Builds the store, the services and the router from a
/// Config, runs the HTTP server on a thread pool, and stops gracefully.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"

namespace parley::http {
class Router;
}
namespace parley::store {
class Store;
}

namespace parley::app {

/// Owns every long-lived object of a server process. Construct, start(), then wait_for_signal() (serve) or just
/// inspect router() (the `routes` command). Thread-safety: construct, start and stop from the main thread.
class App {
public:
    /// Opens (initialising if empty) the data dir and applies migrations. Throws on an unusable data dir or a
    /// database written by a newer Parley.
    explicit App(core::Config config);
    ~App();
    App(const App&) = delete;
    App& operator=(const App&) = delete;

    /// Creates the bootstrap administrator on an empty database; returns a generated password to print once
    /// (empty when the configured credentials were used or users already exist).
    std::string bootstrap_admin();

    /// Starts the thread pool and the listener; returns the bound port.
    std::uint16_t start();

    /// Blocks until SIGTERM/SIGINT, then stops accepting, drains in-flight requests, flushes the store and
    /// returns.
    void wait_for_signal();

    const http::Router& router() const;
    store::Store& store();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// `parley backup DIR`: a consistent online copy of the data dir (database + secret key) into a new
/// timestamped folder under DIR, made while a server may be running. Returns the folder.
std::string backup(const core::Config& config, const std::string& dest_dir);

}  // namespace parley::app
