// Vector search against a local fake embeddings server (deterministic "concept" vectors), hybrid fusion with
// BM25, provider failures, the hnswlib index over restarts and deletions; token accounting per agent with a
// fake LLM; the anthropic model settings; knowledge snippets for the operator copilot.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <atomic>
#include <cctype>
#include <cmath>

#include "knowledge/internal/vectors.h"
#include "knowledge/providers.h"
#include "knowledge/test_util.h"
#include "outbound/outbound.h"
#include "outbound/test_server.h"

namespace parley::knowledge {
namespace {

using outbound::testing::TestRequest;
using outbound::testing::TestResponse;
using outbound::testing::TestServer;
using testing::thrown;

constexpr std::size_t kDims = 64;

/// A deterministic embedding: words of a few concepts share a dimension (so "shipping" is near "courier
/// delivery" without sharing a word); other words hash into the remaining dimensions with a small weight.
std::vector<double> fake_vector(const std::string& text) {
    static const std::map<std::string, std::size_t> concepts = {
        {"delivery", 0}, {"deliver", 0}, {"shipping", 0}, {"ship", 0},  {"courier", 0},   {"parcel", 0},
        {"refund", 1},   {"return", 1},  {"returns", 1},  {"money", 1}, {"back", 1},      {"warranty", 2},
        {"guarantee", 2}, {"repair", 2}, {"payment", 3},  {"pay", 3},   {"card", 3},      {"cash", 3}};
    std::vector<double> v(kDims, 0.0);
    std::string word;
    auto flush = [&] {
        if (word.empty()) return;
        auto it = concepts.find(word);
        if (it != concepts.end()) {
            v[it->second] += 1.0;
        } else {
            v[8 + std::hash<std::string>{}(word) % (kDims - 8)] += 0.3;
        }
        word.clear();
    };
    for (unsigned char c : text) {
        if (std::isalnum(c)) {
            word += static_cast<char>(std::tolower(c));
        } else {
            flush();
        }
    }
    flush();
    return v;
}

/// The fake OpenAI-compatible /embeddings endpoint. `mode`: 0 answers, 1 → 500, 2 → a malformed answer.
struct FakeEmbeddings {
    std::atomic<int> mode{0};
    std::atomic<int> requests{0};
    std::atomic<std::size_t> largest_batch{0};

    TestResponse answer(const TestRequest& req) {
        ++requests;
        if (req.path != "/v1/embeddings") return TestResponse{404, {}, "{}"};
        if (mode == 1) return TestResponse{500, {}, R"({"error":{"message":"embeddings are down"}})"};
        if (mode == 2) return TestResponse{200, {}, R"({"data":[]})"};
        auto body = boost::json::parse(req.body).as_object();
        const auto& inputs = body.at("input").as_array();
        std::size_t n = inputs.size();
        std::size_t seen = largest_batch.load();
        while (n > seen && !largest_batch.compare_exchange_weak(seen, n)) {
        }
        boost::json::array data;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            boost::json::array values;
            for (double x : fake_vector(std::string(inputs[i].as_string()))) values.emplace_back(x);
            data.push_back(boost::json::object{{"index", i}, {"embedding", std::move(values)}});
        }
        return TestResponse{200, {{"content-type", "application/json"}},
                            boost::json::serialize(boost::json::object{{"data", std::move(data)},
                                                                       {"usage", {{"prompt_tokens", 7}}}})};
    }
};

/// An LLM that answers with usage, or fails.
class FakeLlm final : public LlmClient {
public:
    void chat(ChatRequest request, std::function<void(ChatResult)> done) override {
        last_provider = request.provider;
        if (fail) return done(ChatResult{"", "HTTP 529: overloaded", TokenUsage{40, 0}});
        done(ChatResult{"From the provider.", "", TokenUsage{100, 12}});
    }
    std::atomic<bool> fail{false};
    std::string last_provider;
};

/// Constructed before (destroyed after) the knowledge fixture.
struct Providers {
    Providers()
        : server([this](const TestRequest& req) { return fake.answer(req); }, 2),
          http([] {
              outbound::ClientOptions options;
              options.allowlist = [] { return std::optional<boost::json::value>(boost::json::array{"127.0.0.1"}); };
              return options;
          }()),
          client(http, RetryPolicy{2, 10, 2000}) {}
    KnowledgeOptions options() {
        KnowledgeOptions o;
        o.embedder = &client;
        o.llm = &llm;
        return o;
    }
    FakeEmbeddings fake;
    TestServer server;
    outbound::Client http;
    ProviderClient client;
    FakeLlm llm;
};

class VectorTest : public Providers, public testing::KnowledgeTest {
protected:
    VectorTest() : testing::KnowledgeTest(options()) {}
    ~VectorTest() override { service_->stop(); }

    std::string embeddings_spec() const {
        return R"({"base_url": ")" + server.url("/v1") + R"(", "model": "fake-embed"})";
    }
    KnowledgeBase shop() {
        KnowledgeBase kb = make_base(R"({"name": "shop", "embeddings": )" + embeddings_spec() + "}");
        upload("shop", "delivery.md", "# Delivery\n\nCourier delivery costs 120 UAH across the country.\n");
        upload("shop", "returns.md", "# Returns\n\nA refund is paid within 14 days after we receive the item.\n");
        upload("shop", "warranty.md", "# Warranty\n\nAll devices have a twelve month guarantee.\n");
        return kb;
    }
    std::vector<SearchHit> hybrid(const std::string& kb_id, const std::string& query, std::size_t k = 3) {
        return run(service_->search_hybrid({kb_id}, query, k));
    }
};

TEST_F(VectorTest, HybridSearchFindsPassagesWithoutSharedWords) {
    KnowledgeBase kb = shop();
    for (const auto& d : service_->list_documents("shop", "", 10).items) {
        EXPECT_EQ(d.status, DocumentStatus::kReady);
        EXPECT_EQ(d.embedding_status, "ready") << d.embedding_error.value_or("");
    }
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_embeddings"), count("SELECT count(*) FROM knowledge_chunks"));
    auto json = service_->base_json(service_->get_base("shop"));
    EXPECT_EQ(json.at("search"), "hybrid");
    EXPECT_EQ(json.at("embedded_chunks"), 3);

    // BM25 alone knows no "shipping"; the vectors do.
    EXPECT_TRUE(service_->search({kb.id}, "shipping", 3).empty());
    auto hits = hybrid(kb.id, "shipping");
    ASSERT_FALSE(hits.empty());
    EXPECT_EQ(hits[0].document_name, "delivery.md");
    EXPECT_GT(hits[0].score, 0.9);
    hits = hybrid(kb.id, "money back");
    ASSERT_FALSE(hits.empty());
    EXPECT_EQ(hits[0].document_name, "returns.md");
    // A lexical match still leads.
    hits = hybrid(kb.id, "twelve month guarantee");
    ASSERT_FALSE(hits.empty());
    EXPECT_EQ(hits[0].document_name, "warranty.md");

    // Agents on the base answer through the fused retrieval.
    run(service_->create_agent(boost::json::parse(R"({"name": "bot", "knowledge_bases": ["shop"]})").as_object()));
    AskResult answer = ask("bot", "shipping?");
    EXPECT_FALSE(answer.escalate) << answer.escalation_reason;
    ASSERT_FALSE(answer.sources.empty());
    EXPECT_EQ(answer.sources[0].document_name, "delivery.md");
}

TEST_F(VectorTest, EmbeddingsAreRequestedInBatches) {
    make_base(R"({"name": "big", "chunking": {"size": 100, "overlap": 0}, "embeddings": )" + embeddings_spec() + "}");
    std::string text;
    for (int i = 0; i < 300; ++i) text += "Paragraph " + std::to_string(i) + " tells about parcel number " + std::to_string(i) + ".\n\n";
    fake.requests = 0;
    Document d = upload("big", "long.txt", text);
    ASSERT_EQ(d.status, DocumentStatus::kReady);
    EXPECT_EQ(d.embedding_status, "ready");
    ASSERT_GT(d.chunks, static_cast<std::int64_t>(kEmbeddingBatch));
    EXPECT_GE(fake.requests.load(), static_cast<int>((d.chunks + kEmbeddingBatch - 1) / kEmbeddingBatch));
    EXPECT_EQ(fake.largest_batch.load(), kEmbeddingBatch);
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_embeddings"), d.chunks);
}

TEST_F(VectorTest, ProviderFailuresLeaveBm25Intact) {
    KnowledgeBase kb = make_base(R"({"name": "shop", "embeddings": )" + embeddings_spec() + "}");
    fake.mode = 1;
    Document d = upload("shop", "delivery.md", "# Delivery\n\nCourier delivery costs 120 UAH.\n");
    EXPECT_EQ(d.status, DocumentStatus::kReady);
    EXPECT_GT(d.chunks, 0);
    EXPECT_EQ(d.embedding_status, "error");
    ASSERT_TRUE(d.embedding_error);
    EXPECT_NE(d.embedding_error->find("embeddings are down"), std::string::npos) << *d.embedding_error;
    auto json = service_->document_json(d);
    EXPECT_EQ(json.at("embeddings"), "error");
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_embeddings"), 0);
    // The query cannot be embedded either: BM25 answers alone.
    auto hits = hybrid(kb.id, "courier delivery");
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].document_name, "delivery.md");

    fake.mode = 2;  // malformed answers are failures too
    d = upload("shop", "returns.md", "# Returns\n\nRefund in 14 days.\n");
    EXPECT_EQ(d.status, DocumentStatus::kReady);
    EXPECT_EQ(d.embedding_status, "error");

    fake.mode = 0;  // re-indexing embeds it
    run(service_->reindex_document("shop", d.id));
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(30)));
    EXPECT_EQ(service_->get_document("shop", d.id).embedding_status, "ready");
}

TEST_F(VectorTest, NoEmbedderMeansBm25WithAVisibleStatus) {
    restart(KnowledgeOptions{});
    make_base(R"({"name": "shop", "embeddings": )" + embeddings_spec() + "}");
    Document d = upload("shop", "delivery.md", "# Delivery\n\nCourier delivery costs 120 UAH.\n");
    EXPECT_EQ(d.status, DocumentStatus::kReady);
    EXPECT_EQ(d.embedding_status, "error");
    EXPECT_EQ(d.embedding_error, "no embeddings client is configured on this server");
    EXPECT_EQ(hybrid(service_->get_base("shop").id, "courier").size(), 1u);
}

TEST_F(VectorTest, TheIndexFollowsChangesAndRestarts) {
    KnowledgeBase kb = shop();
    ASSERT_EQ(hybrid(kb.id, "shipping")[0].document_name, "delivery.md");
    restart(options());  // the index is rebuilt from the stored vectors
    ASSERT_EQ(hybrid(kb.id, "shipping")[0].document_name, "delivery.md");

    // A re-upload replaces the vectors; a deletion removes them.
    Document delivery;
    for (const auto& d : service_->list_documents("shop", "", 10).items) {
        if (d.name == "delivery.md") delivery = d;
    }
    run(service_->replace_document("shop", delivery.id, Upload{"", "", "# Payment\n\nPay by card or cash.\n"}));
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(30)));
    auto hits = hybrid(kb.id, "shipping");
    for (const auto& h : hits) EXPECT_EQ(h.text.find("Courier"), std::string::npos);
    EXPECT_EQ(hybrid(kb.id, "payment")[0].document_id, delivery.id);
    run(service_->delete_document("shop", delivery.id));
    for (const auto& h : hybrid(kb.id, "payment")) EXPECT_NE(h.document_id, delivery.id);

    // Embeddings switched off: vectors go, BM25 stays.
    run(service_->update_base("shop", boost::json::parse(R"({"embeddings": {}})").as_object()));
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_embeddings"), 0);
    EXPECT_TRUE(hybrid(kb.id, "shipping").empty());
    EXPECT_EQ(hybrid(kb.id, "refund")[0].document_name, "returns.md");
    EXPECT_EQ(service_->list_documents("shop", "", 10).items[0].embedding_status, "none");
    // ... and on again: every document is embedded again.
    run(service_->update_base("shop", boost::json::parse(R"({"embeddings": )" + embeddings_spec() + "}").as_object()));
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(30)));
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_embeddings"), count("SELECT count(*) FROM knowledge_chunks"));
    EXPECT_EQ(hybrid(kb.id, "money back")[0].document_name, "returns.md");
}

TEST_F(VectorTest, RefusesBadEmbeddingsSettings) {
    for (const char* bad : {R"("x")", R"({"model": ""})", R"({"base_url": "ftp://x", "model": "m"})",
                            R"({"model": "m", "api_key": "sk"})", R"({"model": "m", "dimensions": 0})",
                            R"({"model": "m", "dimensions": 99999})", R"({"model": "m", "other": 1})",
                            R"({"model": "m", "api_key_setting": "BAD KEY"})"}) {
        auto t = thrown([&] { make_base(std::string(R"({"name": "x", "embeddings": )") + bad + "}"); });
        EXPECT_EQ(t.status, 400) << bad;
    }
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_bases"), 0);
}

TEST(VectorIndex, BlobsAndNormalization) {
    std::vector<float> v{3, 4};
    ASSERT_TRUE(internal::normalize(v));
    EXPECT_FLOAT_EQ(v[0], 0.6f);
    EXPECT_EQ(internal::blob_vector(internal::vector_blob(v)), v);
    std::vector<float> zero{0, 0};
    EXPECT_FALSE(internal::normalize(zero));
    std::vector<float> nan{std::nanf(""), 1};
    EXPECT_FALSE(internal::normalize(nan));
    EXPECT_TRUE(internal::blob_vector("abc").empty());
}

// --- token accounting ----------------------------------------------------------------------------------------

TEST_F(VectorTest, CountsTokensAndCallsPerAgentAndDay) {
    make_base(R"({"name": "faq"})");
    upload("faq", "delivery.md", "# Delivery\n\nCourier delivery costs 120 UAH.\n");
    run(service_->create_agent(boost::json::parse(
        R"({"name": "claude", "knowledge_bases": ["faq"], "model": {"provider": "anthropic", "model": "claude-test"}})")
                                   .as_object()));
    run(service_->create_agent(boost::json::parse(R"({"name": "plain", "knowledge_bases": ["faq"]})").as_object()));
    Agent claude = service_->get_agent("claude");
    EXPECT_EQ(claude.model.at("base_url"), "https://api.anthropic.com");

    EXPECT_EQ(ask("claude", "How much is courier delivery?").answer, "From the provider.");
    EXPECT_EQ(llm.last_provider, "anthropic");
    ask("claude", "Courier delivery price?");
    llm.fail = true;
    EXPECT_EQ(thrown([&] { ask("claude", "Courier delivery price?"); }).code, "provider_error");
    llm.fail = false;
    clock_.advance_ms(86'400'000);  // the next day
    ask("claude", "How much is courier delivery?");

    auto days = service_->agent_usage("claude", "", "");
    ASSERT_EQ(days.size(), 2u);
    EXPECT_EQ(days[0].asks, 3);
    EXPECT_EQ(days[0].provider_calls, 3);
    EXPECT_EQ(days[0].errors, 1);
    EXPECT_EQ(days[0].input_tokens, 240);
    EXPECT_EQ(days[0].output_tokens, 24);
    EXPECT_EQ(days[1].asks, 1);
    EXPECT_EQ(days[1].input_tokens, 100);
    EXPECT_EQ(service_->agent_usage("claude", days[1].day, days[1].day).size(), 1u);

    // The built-in answerer counts questions, no provider calls.
    ask("plain", "How much is courier delivery?");
    std::vector<UsageDay> plain;
    for (int i = 0; i < 200 && plain.empty(); ++i) {
        plain = service_->agent_usage("plain", "", "");
        if (plain.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(plain.size(), 1u);
    EXPECT_EQ(plain[0].asks, 1);
    EXPECT_EQ(plain[0].provider_calls, 0);

    EXPECT_EQ(thrown([&] { service_->agent_usage("claude", "2026-13-01", ""); }).status, 400);
    EXPECT_EQ(thrown([&] { service_->agent_usage("claude", "yesterday", ""); }).status, 400);
    EXPECT_EQ(thrown([&] { service_->agent_usage("claude", "2020-01-01", "2026-01-01"); }).status, 400);
    EXPECT_EQ(thrown([&] { service_->agent_usage("claude", "2026-02-01", "2026-01-01"); }).status, 400);
    EXPECT_EQ(thrown([&] { service_->agent_usage("nobody", "", ""); }).status, 404);
    run(service_->delete_agent("claude"));
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_agent_usage WHERE agent_id = '" + claude.id + "'"), 0);
}

TEST_F(VectorTest, AnthropicModelSettingsAreChecked) {
    auto create = [&](const std::string& model) {
        return thrown([&] {
            run(service_->create_agent(boost::json::parse(R"({"name": "a", "model": )" + model + "}").as_object()));
        });
    };
    EXPECT_EQ(create(R"({"provider": "anthropic"})").status, 400);  // no model
    EXPECT_EQ(create(R"({"provider": "anthropic", "model": "m", "temperature": 1.5})").status, 400);
    EXPECT_EQ(create(R"({"provider": "anthropic", "model": "m", "api_key": "sk-ant"})").code, "secret_in_agent");
    EXPECT_EQ(create(R"({"provider": "gemini", "model": "m"})").status, 400);
    EXPECT_EQ(create(R"({"provider": "anthropic", "model": "m", "max_tokens": 0})").status, 400);
    EXPECT_EQ(create(R"({"provider": "anthropic", "model": "m", "base_url": "http://proxy.local/v1", "temperature": 1})").status, 0);
}

// --- operator copilot -------------------------------------------------------------------------------------------

TEST_F(VectorTest, SnippetsForADialog) {
    make_base(R"({"name": "faq"})");
    make_base(R"({"name": "other"})");
    upload("faq", "delivery.md", "# Delivery\n\nCourier delivery costs 120 UAH and takes two days.\n");
    upload("faq", "returns.md", "# Returns\n\nReturns are accepted within 14 days.\n");
    upload("other", "jobs.md", "# Jobs\n\nWe hire couriers in Lviv.\n");
    std::string dialog = "Client: Hello!\nOperator: Hi, how can I help?\nClient: how much does courier delivery cost?";
    auto snippets = service_->snippets_for_dialog(dialog, 2, {"faq"});
    ASSERT_FALSE(snippets.empty());
    EXPECT_LE(snippets.size(), 2u);
    EXPECT_EQ(snippets[0].document_name, "delivery.md");
    EXPECT_GT(snippets[0].score, 0.3);
    EXPECT_EQ(snippets[0].heading, "Delivery");
    for (const auto& s : snippets) EXPECT_NE(s.document_name, "jobs.md");

    // Every base when none is named; only the newest text of a long dialog counts.
    std::string long_dialog(5000, 'x');
    long_dialog += " Client: are returns accepted?";
    auto all = service_->snippets_for_dialog(long_dialog, 3);
    ASSERT_FALSE(all.empty());
    EXPECT_EQ(all[0].document_name, "returns.md");
    auto co = run(service_->co_snippets_for_dialog(dialog, 1, {}));
    ASSERT_EQ(co.size(), 1u);
    EXPECT_EQ(co[0].document_name, "delivery.md");

    EXPECT_TRUE(service_->snippets_for_dialog("   ", 3).empty());
    EXPECT_TRUE(service_->snippets_for_dialog("", 3).empty());
    EXPECT_EQ(thrown([&] { service_->snippets_for_dialog("delivery", 3, {"missing"}); }).status, 404);
}

}  // namespace
}  // namespace parley::knowledge
