/// Awaitable writes for code on Asio worker threads: the coroutine suspends while the writer commits, so no
/// worker thread ever blocks on an fsync.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/associated_executor.hpp>
#include <memory>
#include <type_traits>

#include "store/store.h"

namespace parley::store {

/// `co_await co_write(store, fn)` runs fn(Tx&) in the next group commit and resumes on the caller's executor
/// once durable, returning fn's result (or rethrowing its exception).
template <typename F>
auto co_write(Store& store, F fn) {
    using Result = std::invoke_result_t<F&, Tx&>;
    if constexpr (std::is_void_v<Result>) {
        return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, void(std::exception_ptr)>(
            [&store](auto handler, F fn) {
                auto executor = boost::asio::get_associated_executor(handler);
                auto shared = std::make_shared<decltype(handler)>(std::move(handler));
                store.write([fn = std::move(fn)](Tx& tx) mutable { fn(tx); },
                            [shared, executor](std::exception_ptr error) {
                                boost::asio::post(executor, [shared, error]() mutable { (*shared)(error); });
                            });
            },
            boost::asio::use_awaitable, std::move(fn));
    } else {
        return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, void(std::exception_ptr, Result)>(
            [&store](auto handler, F fn) {
                auto executor = boost::asio::get_associated_executor(handler);
                auto shared = std::make_shared<decltype(handler)>(std::move(handler));
                auto result = std::make_shared<Result>();
                store.write([fn = std::move(fn), result](Tx& tx) mutable { *result = fn(tx); },
                            [shared, executor, result](std::exception_ptr error) {
                                boost::asio::post(executor, [shared, error, result]() mutable {
                                    (*shared)(error, std::move(*result));
                                });
                            });
            },
            boost::asio::use_awaitable, std::move(fn));
    }
}

}  // namespace parley::store
