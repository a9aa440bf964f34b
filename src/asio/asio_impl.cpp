// Separate compilation of Boost.Asio and Boost.Beast: their implementation is compiled once here instead of in
// every translation unit that includes them (BOOST_ASIO_SEPARATE_COMPILATION / BOOST_BEAST_SEPARATE_COMPILATION
// are set for the whole project in the top-level CMakeLists.txt).
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
