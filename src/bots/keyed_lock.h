/// An asynchronous mutex per key (a dialog id): coroutines that lock the same key run one after another in
/// arrival order; different keys never wait for each other. Waiting suspends the coroutine, never a thread.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace parley::bots {

/// Thread-safety: lock() and the guards' destruction may happen on any thread.
class KeyedLock {
public:
    /// Releases the key when destroyed (hands it to the next waiter, if any).
    class Guard {
    public:
        Guard() = default;
        Guard(KeyedLock* owner, std::string key) : owner_(owner), key_(std::move(key)) {}
        Guard(Guard&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)), key_(std::move(other.key_)) {}
        Guard& operator=(Guard&& other) noexcept {
            if (this != &other) {
                release();
                owner_ = std::exchange(other.owner_, nullptr);
                key_ = std::move(other.key_);
            }
            return *this;
        }
        ~Guard() { release(); }
        void release() {
            if (owner_) std::exchange(owner_, nullptr)->unlock(key_);
        }

    private:
        KeyedLock* owner_ = nullptr;
        std::string key_;
    };

    boost::asio::awaitable<Guard> lock(std::string key) {
        {
            std::lock_guard lock(mutex_);
            auto& entry = entries_[key];
            if (!entry.locked) {
                entry.locked = true;
                co_return Guard(this, std::move(key));
            }
        }
        auto initiate = [this, &key](auto handler) {
                auto executor = boost::asio::get_associated_executor(handler);
                auto shared = std::make_shared<decltype(handler)>(std::move(handler));
                std::function<void()> resume = [shared, executor] {
                    boost::asio::post(executor, [shared]() mutable { (*shared)(); });
                };
                std::unique_lock lock(mutex_);
                auto& entry = entries_[key];
                if (!entry.locked) {  // released between the check above and here
                    entry.locked = true;
                    lock.unlock();
                    resume();
                    return;
                }
                entry.waiters.push_back(std::move(resume));
        };
        co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, void()>(std::move(initiate),
                                                                                          boost::asio::use_awaitable);
        co_return Guard(this, std::move(key));
    }

    /// Keys currently locked (for metrics and tests).
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return entries_.size();
    }

private:
    struct Entry {
        bool locked = false;
        std::deque<std::function<void()>> waiters;
    };

    void unlock(const std::string& key) {
        std::function<void()> next;
        {
            std::lock_guard lock(mutex_);
            auto it = entries_.find(key);
            if (it == entries_.end()) return;
            if (it->second.waiters.empty()) {
                entries_.erase(it);
                return;
            }
            next = std::move(it->second.waiters.front());
            it->second.waiters.pop_front();  // stays locked: ownership passes to `next`
        }
        next();
    }

    mutable std::mutex mutex_;
    std::unordered_map<std::string, Entry> entries_;
};

}  // namespace parley::bots
