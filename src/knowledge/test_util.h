/// Test fixture for the knowledge module: a real SQLite store in a temp dir (with the module's migrations), a
/// FakeClock, the service, and an io_context thread that runs its coroutines.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <memory>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "knowledge/knowledge.h"
#include "store/store.h"

namespace parley::knowledge::testing {

/// Thread-safety: the test's thread drives it; service coroutines run on the fixture's io thread.
class KnowledgeTest : public ::testing::Test {
protected:
    /// `with_sync_root`: options.sync_root becomes `<temp dir>/sync` (created).
    explicit KnowledgeTest(KnowledgeOptions options = {}, bool with_sync_root = false);
    ~KnowledgeTest() override;

    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        return boost::asio::co_spawn(io_, std::move(task), boost::asio::use_future).get();
    }
    void run(boost::asio::awaitable<void> task) {
        boost::asio::co_spawn(io_, std::move(task), boost::asio::use_future).get();
    }

    /// Creates a knowledge base from JSON text.
    KnowledgeBase make_base(const std::string& spec);
    /// Uploads a document and waits until ingestion is done; returns it as stored.
    Document upload(const std::string& kb, const std::string& name, std::string content,
                    const std::string& content_type = "");
    /// Uploads every file of `dir` (sorted by name) and waits for ingestion.
    void upload_dir(const std::string& kb, const std::filesystem::path& dir);
    AskResult ask(const std::string& agent, const std::string& input);
    std::int64_t count(const std::string& sql);
    /// Stops and destroys the service, then makes a new one on the same store (a restart).
    void restart(KnowledgeOptions options = {});

    std::filesystem::path dir_;
    std::filesystem::path sync_root_;  ///< `<temp dir>/sync`
    core::FakeClock clock_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<KnowledgeService> service_;
    boost::asio::io_context io_;

private:
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
    std::thread thread_;
};

/// The error a coroutine or call throws, as {status, code}; {0, ""} when it does not throw.
struct Thrown {
    int status = 0;
    std::string code;
    std::string message;
};
template <typename F>
Thrown thrown(F&& fn) {
    try {
        fn();
    } catch (const core::Error& e) {
        return {e.status(), e.code(), e.what()};
    }
    return {};
}

/// Reads a whole file.
std::string read_file(const std::filesystem::path& path);

/// A minimal one-page PDF whose text layer holds `lines` (ASCII), with a correct xref table.
std::string make_pdf(const std::vector<std::string>& lines);
/// A DOCX (ZIP) whose word/document.xml is `document_xml`.
std::string make_docx(const std::string& document_xml);
/// A word/document.xml with these paragraphs; a paragraph starting with "# " gets style Heading1.
std::string docx_xml(const std::vector<std::string>& paragraphs);

}  // namespace parley::knowledge::testing
