/// Awaitable CPU-bound work for coroutines on the connection threads: `co_await co_offload(pool, fn)` runs fn()
/// on `pool` and resumes on the caller's executor with its result (or rethrows its exception). Used for work that
/// would otherwise stall every connection pinned to the calling thread (argon2 password hashing: ~50 ms).
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <type_traits>

namespace parley::asio_util {

/// GCC 12: name the callable in a local variable before `co_await co_offload(pool, std::move(fn))`.
template <typename F>
auto co_offload(boost::asio::thread_pool& pool, F fn) {
    using Result = std::invoke_result_t<F&>;
    static_assert(!std::is_void_v<Result>, "co_offload needs a callable that returns a value");
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, void(std::exception_ptr, Result)>(
        [&pool](auto handler, F fn) {
            auto executor = boost::asio::get_associated_executor(handler);
            auto shared = std::make_shared<decltype(handler)>(std::move(handler));
            boost::asio::post(pool, [fn = std::move(fn), shared, executor]() mutable {
                std::exception_ptr error;
                std::optional<Result> result;
                try {
                    result.emplace(fn());
                } catch (...) {
                    error = std::current_exception();
                }
                boost::asio::post(executor, [shared, error, result = std::move(result)]() mutable {
                    (*shared)(error, result ? std::move(*result) : Result{});
                });
            });
        },
        boost::asio::use_awaitable, std::move(fn));
}

}  // namespace parley::asio_util
