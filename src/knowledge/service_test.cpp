#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "core/error.h"
#include "auth/settings.h"
#include "knowledge/test_util.h"

namespace parley::knowledge {
namespace {

namespace json = boost::json;
using testing::thrown;

class ServiceTest : public testing::KnowledgeTest {
protected:
    json::object obj(const std::string& text) { return json::parse(text).as_object(); }
};

const char* kDelivery =
    "# Доставка\n\nМи доставляємо замовлення «Новою поштою» за 1–3 робочі дні.\n\n"
    "## Вартість\n\nДоставка у відділення безкоштовна для замовлень від 1500 грн.\n";

TEST_F(ServiceTest, KnowledgeBasesByIdOrName) {
    KnowledgeBase kb = make_base(R"({"name": "Support FAQ", "description": "d", "chunking": {"size": 500, "overlap": 50}})");
    EXPECT_EQ(kb.chunking.size, 500u);
    EXPECT_EQ(service_->get_base(kb.id).name, "Support FAQ");
    EXPECT_EQ(service_->get_base("Support FAQ").id, kb.id);
    EXPECT_EQ(thrown([&] { make_base(R"({"name": "Support FAQ"})"); }).code, "name_taken");
    EXPECT_EQ(thrown([&] { make_base(R"({"name": ""})"); }).code, "invalid_name");
    EXPECT_EQ(thrown([&] { make_base(R"({"name": "01ARZ3NDEKTSV4RRFFQ69G5FAV"})"); }).code, "invalid_name");
    EXPECT_EQ(thrown([&] { make_base(R"({"name": "x", "chunking": {"size": 50}})"); }).status, 400);
    EXPECT_EQ(thrown([&] { make_base(R"({"name": "x", "chunking": {"size": 500, "overlap": 300}})"); }).status, 400);
    EXPECT_EQ(thrown([&] { make_base(R"({"name": "x", "colour": 1})"); }).code, "unknown_field");
    EXPECT_EQ(thrown([&] { service_->get_base("nope"); }).status, 404);
    auto renamed = run(service_->update_base("Support FAQ", obj(R"({"name": "FAQ"})")));
    EXPECT_EQ(renamed.name, "FAQ");
    EXPECT_EQ(service_->list_bases().size(), 1u);
}

TEST_F(ServiceTest, UploadIndexesAndSearches) {
    make_base(R"({"name": "kb"})");
    Document d = upload("kb", "delivery.md", kDelivery);
    EXPECT_EQ(d.status, DocumentStatus::kReady) << d.error.value_or("");
    EXPECT_EQ(d.format, "md");
    EXPECT_EQ(d.chunks, 2);
    EXPECT_FALSE(d.progress.has_value());
    auto kb = service_->get_base("kb");
    auto hits = service_->search({kb.id}, "скільки коштує доставку у відділення", 5);
    ASSERT_FALSE(hits.empty());
    EXPECT_NE(hits[0].text.find("безкоштовна"), std::string::npos);
    EXPECT_EQ(hits[0].heading, "Доставка › Вартість");
    EXPECT_EQ(hits[0].document_name, "delivery.md");
    EXPECT_EQ(hits[0].chunk, 1);
    EXPECT_GT(hits[0].score, 0.5);
    EXPECT_LE(hits[0].score, 1.0);
    EXPECT_TRUE(service_->search({kb.id}, "холодильник", 5).empty());
    EXPECT_EQ(thrown([&] { service_->search({kb.id}, "  ", 5); }).status, 400);
    EXPECT_EQ(thrown([&] { service_->search({kb.id}, "x", 0); }).status, 400);
    EXPECT_EQ(thrown([&] { service_->search({kb.id}, std::string(kMaxQueryBytes + 1, 'a'), 5); }).status, 400);
    // Other bases do not see it.
    auto other = make_base(R"({"name": "other"})");
    EXPECT_TRUE(service_->search({other.id}, "доставка", 5).empty());
}

TEST_F(ServiceTest, BadDocumentsFailVisiblyAndIndexNothing) {
    make_base(R"({"name": "kb"})");
    EXPECT_EQ(thrown([&] { run(service_->add_document("kb", Upload{"big.txt", "", std::string(kMaxDocumentBytes + 1, 'a')})); }).status,
              413);
    EXPECT_EQ(thrown([&] { run(service_->add_document("kb", Upload{"e.txt", "", ""})); }).code, "empty_file");
    EXPECT_EQ(thrown([&] { run(service_->add_document("kb", Upload{"p.png", "image/png", std::string("\x89PNG\r\n\x1a\n\0\0", 10)})); }).status,
              415);
    EXPECT_EQ(thrown([&] { run(service_->add_document("nope", Upload{"a.txt", "", "x"})); }).status, 404);

    Document broken = upload("kb", "broken.pdf", "%PDF-1.7\n1 0 obj garbage");
    EXPECT_EQ(broken.status, DocumentStatus::kError);
    ASSERT_TRUE(broken.error.has_value());
    EXPECT_NE(broken.error->find("PDF"), std::string::npos);
    Document image_only = upload("kb", "scan.pdf", testing::make_pdf({}));
    EXPECT_EQ(image_only.status, DocumentStatus::kError);
    EXPECT_NE(image_only.error->find("no text layer"), std::string::npos);
    Document blank = upload("kb", "blank.txt", "   \n\n\t\n");
    EXPECT_EQ(blank.status, DocumentStatus::kError);
    EXPECT_EQ(blank.chunks, 0);
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_chunks"), 0);
    auto page = service_->list_documents("kb", "", 50);
    EXPECT_EQ(page.items.size(), 3u);
}

TEST_F(ServiceTest, FormatsEndToEnd) {
    make_base(R"({"name": "kb"})");
    EXPECT_EQ(upload("kb", "w.pdf", testing::make_pdf({"Warranty lasts twelve months."})).status, DocumentStatus::kReady);
    EXPECT_EQ(upload("kb", "p.docx", testing::make_docx(testing::docx_xml({"# Payment", "Instalments up to ten parts."}))).status,
              DocumentStatus::kReady);
    EXPECT_EQ(upload("kb", "r.html", "<html><body><nav>Menu</nav><p>Returns take fourteen days.</p></body></html>").status,
              DocumentStatus::kReady);
    EXPECT_EQ(upload("kb", "faq.csv", "question,answer\nLocker limit?,Twenty kilograms\n").status, DocumentStatus::kReady);
    EXPECT_EQ(upload("kb", "a.txt", "Accounts are free.").status, DocumentStatus::kReady);
    auto id = service_->get_base("kb").id;
    EXPECT_EQ(service_->search({id}, "warranty months", 1).at(0).document_name, "w.pdf");
    EXPECT_EQ(service_->search({id}, "instalments", 1).at(0).document_name, "p.docx");
    EXPECT_EQ(service_->search({id}, "returns days", 1).at(0).document_name, "r.html");
    EXPECT_TRUE(service_->search({id}, "menu", 1).empty());
    auto csv = service_->search({id}, "locker limit", 1).at(0);
    EXPECT_EQ(csv.text, "question: Locker limit?\nanswer: Twenty kilograms");
}

TEST_F(ServiceTest, ReuploadRenameReindexDelete) {
    make_base(R"({"name": "kb"})");
    auto id = service_->get_base("kb").id;
    Document d = upload("kb", "a.txt", "Bananas are yellow.");
    auto replaced = run(service_->replace_document("kb", d.id, Upload{"", "", "Cherries are red."}));
    EXPECT_EQ(replaced.revision, 2);
    EXPECT_EQ(replaced.name, "a.txt");
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(10)));
    EXPECT_TRUE(service_->search({id}, "bananas", 5).empty());
    EXPECT_EQ(service_->search({id}, "cherries", 5).size(), 1u);
    EXPECT_EQ(run(service_->rename_document("kb", d.id, "fruit.txt")).name, "fruit.txt");
    auto again = run(service_->reindex_document("kb", d.id));
    EXPECT_EQ(again.revision, 3);
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(10)));
    EXPECT_EQ(service_->get_document("kb", d.id).status, DocumentStatus::kReady);
    EXPECT_EQ(service_->document_chunks("kb", d.id, -1, 10).size(), 1u);
    run(service_->delete_document("kb", d.id));
    EXPECT_TRUE(service_->search({id}, "cherries", 5).empty());
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_chunks"), 0);
    EXPECT_EQ(thrown([&] { service_->get_document("kb", d.id); }).code, "document_not_found");
}

TEST_F(ServiceTest, ChunkingChangeReindexes) {
    make_base(R"({"name": "kb", "chunking": {"size": 2000, "overlap": 0}})");
    std::string text;
    for (int i = 0; i < 40; ++i) text += "Paragraph number " + std::to_string(i) + " talks about deliveries.\n\n";
    Document d = upload("kb", "long.txt", text);
    std::int64_t before = d.chunks;
    run(service_->update_base("kb", obj(R"({"chunking": {"size": 200, "overlap": 20}})")));
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(10)));
    auto after = service_->get_document("kb", d.id);
    EXPECT_EQ(after.status, DocumentStatus::kReady);
    EXPECT_GT(after.chunks, before);
}

TEST_F(ServiceTest, PaginatesDocuments) {
    make_base(R"({"name": "kb"})");
    for (int i = 0; i < 5; ++i) run(service_->add_document("kb", Upload{"d" + std::to_string(i) + ".txt", "", "text " + std::to_string(i)}));
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(10)));
    auto p1 = service_->list_documents("kb", "", 2);
    ASSERT_EQ(p1.items.size(), 2u);
    ASSERT_TRUE(p1.next_cursor);
    auto p2 = service_->list_documents("kb", *p1.next_cursor, 2);
    auto p3 = service_->list_documents("kb", *p2.next_cursor, 2);
    EXPECT_EQ(p3.items.size(), 1u);
    EXPECT_FALSE(p3.next_cursor);
}

TEST_F(ServiceTest, RequeuesWhatACrashLeftBehind) {
    make_base(R"({"name": "kb"})");
    Document d = upload("kb", "a.txt", "Lanterns glow at night.");
    // As if the process died mid-ingestion: the document is `processing`, its chunks never committed.
    store_->write_sync([&](store::Tx& tx) {
        tx.exec("UPDATE knowledge_documents SET status = 'processing' WHERE id = ?", {d.id});
        tx.exec("INSERT INTO knowledge_documents (id, kb_id, name, format, size, status, content, created_at, updated_at) "
                "SELECT 'queued-doc', kb_id, 'b.txt', 'txt', 5, 'queued', CAST('Owls hoot.' AS BLOB), 0, 0 "
                "FROM knowledge_documents WHERE id = ?",
                {d.id});
    });
    restart();
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(10)));
    EXPECT_EQ(service_->get_document("kb", d.id).status, DocumentStatus::kReady);
    EXPECT_EQ(service_->get_document("kb", "queued-doc").status, DocumentStatus::kReady);
    auto id = service_->get_base("kb").id;
    EXPECT_EQ(service_->search({id}, "lanterns", 5).size(), 1u);  // re-indexed once, not twice
    EXPECT_EQ(service_->search({id}, "owls", 5).size(), 1u);
}

TEST_F(ServiceTest, StopLeavesQueuedDocumentsForTheNextStart) {
    make_base(R"({"name": "kb"})");
    service_->stop();
    // After stop nothing is processed; what is stored stays queued.
    store_->write_sync([&](store::Tx& tx) {
        tx.exec("INSERT INTO knowledge_documents (id, kb_id, name, format, size, status, content, created_at, updated_at) "
                "SELECT 'later', id, 'c.txt', 'txt', 5, 'queued', CAST('Foxes run.' AS BLOB), 0, 0 FROM knowledge_bases");
    });
    restart();
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(10)));
    EXPECT_EQ(service_->get_document("kb", "later").status, DocumentStatus::kReady);
}

TEST_F(ServiceTest, AgentsCrudAndValidation) {
    make_base(R"({"name": "kb"})");
    Agent a = run(service_->create_agent(obj(R"({"name": "faq", "prompt": "You help {{client.name}}.", "knowledge_bases": ["kb"], "model": {}})")));
    EXPECT_EQ(a.kb_ids.size(), 1u);
    EXPECT_TRUE(a.model.empty());
    EXPECT_EQ(service_->get_agent("faq").id, a.id);
    EXPECT_EQ(service_->get_agent(a.id).name, "faq");
    EXPECT_EQ(thrown([&] { run(service_->create_agent(obj(R"({"name": "faq"})"))); }).code, "name_taken");
    EXPECT_EQ(thrown([&] { run(service_->create_agent(obj(R"({"name": "x", "knowledge_bases": ["missing"]})"))); }).status, 422);
    EXPECT_EQ(thrown([&] { run(service_->create_agent(obj(R"({"name": "bad name"})"))); }).code, "invalid_name");
    EXPECT_EQ(thrown([&] { run(service_->create_agent(obj(R"({"name": "x", "prompt": "{{ unclosed"})"))); }).code,
              "invalid_template");
    EXPECT_EQ(thrown([&] { run(service_->create_agent(obj(R"({"name": "x", "model": {"api_key": "sk-1"}})"))); }).code,
              "secret_in_agent");
    EXPECT_EQ(thrown([&] { run(service_->create_agent(obj(R"({"name": "x", "escalation": {"min_score": 2}})"))); }).status, 400);
    Agent p = run(service_->create_agent(obj(R"({"name": "gpt", "model": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_setting": "openai_key"}})")));
    EXPECT_EQ(p.model.at("provider"), "openai");
    auto updated = run(service_->update_agent("faq", obj(R"({"k": 3, "escalation": {"phrases": ["скарга"]}, "knowledge_bases": []})")));
    EXPECT_EQ(updated.k, 3u);
    EXPECT_TRUE(updated.kb_ids.empty());
    EXPECT_EQ(updated.escalation.phrases.size(), 1u);
    EXPECT_EQ(service_->list_agents().size(), 2u);
    run(service_->delete_agent("gpt"));
    EXPECT_EQ(thrown([&] { service_->get_agent("gpt"); }).status, 404);
}

TEST_F(ServiceTest, BaseInUseCannotBeDeleted) {
    make_base(R"({"name": "kb"})");
    upload("kb", "a.txt", "Some text here.");
    run(service_->create_agent(obj(R"({"name": "faq", "knowledge_bases": ["kb"]})")));
    EXPECT_EQ(thrown([&] { run(service_->delete_base("kb")); }).code, "knowledge_base_in_use");
    run(service_->update_agent("faq", obj(R"({"knowledge_bases": []})")));
    run(service_->delete_base("kb"));
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_chunks"), 0);
    EXPECT_EQ(count("SELECT count(*) FROM knowledge_documents"), 0);
}

TEST_F(ServiceTest, AskAnswersAndEscalates) {
    make_base(R"({"name": "kb"})");
    upload("kb", "delivery.md", kDelivery);
    run(service_->create_agent(obj(R"({"name": "faq", "knowledge_bases": ["kb"], "escalation": {"phrases": ["скарга"]}})")));
    auto r = ask("faq", "Скільки коштує доставку у відділення?");
    EXPECT_FALSE(r.escalate);
    EXPECT_EQ(r.answered_by, "extractive");
    EXPECT_EQ(r.answer, "Доставка у відділення безкоштовна для замовлень від 1500 грн.");
    ASSERT_FALSE(r.sources.empty());

    auto human = ask("faq", "З'єднайте мене з оператором, будь ласка");
    EXPECT_TRUE(human.escalate);
    EXPECT_EQ(human.escalation_reason, "human_request");
    EXPECT_NE(human.answer.find("оператору"), std::string::npos);
    EXPECT_EQ(ask("faq", "operator").escalation_reason, "human_request");
    EXPECT_EQ(ask("faq", "I want to talk to a human").escalation_reason, "human_request");
    EXPECT_FALSE(ask("faq", "Чи може інша людина отримати замовлення новою поштою?").escalation_reason == "human_request");
    EXPECT_EQ(ask("faq", "У мене скарга на доставку").escalation_reason, "phrase");
    auto unknown = ask("faq", "What is the capital of France?");
    EXPECT_TRUE(unknown.escalate);
    EXPECT_TRUE(unknown.escalation_reason == "no_knowledge" || unknown.escalation_reason == "low_confidence");
    EXPECT_EQ(thrown([&] { ask("nobody", "hi"); }).code, "agent_not_found");
    EXPECT_EQ(thrown([&] { ask("faq", ""); }).status, 400);
}

/// An LLM client that answers with the system prompt it got, or fails.
class FakeLlm final : public LlmClient {
public:
    void chat(ChatRequest request, std::function<void(ChatResult)> done) override {
        last = request;
        if (fail) return done(ChatResult{"", "connect_failed"});
        done(ChatResult{"LLM: " + request.messages.at(1).content, ""});
    }
    ChatRequest last;
    bool fail = false;
};

class FakeSettings final : public auth::InstanceSettings {
public:
    std::optional<json::value> get(std::string_view key) const override {
        if (key == "openai_key") return json::value("sk-test");
        return std::nullopt;
    }
};

TEST_F(ServiceTest, ProviderAgentsUseTheLlmClient) {
    FakeLlm llm;
    FakeSettings settings;
    KnowledgeOptions options;
    options.llm = &llm;
    options.settings = &settings;
    restart(options);
    make_base(R"({"name": "kb"})");
    upload("kb", "delivery.md", kDelivery);
    run(service_->create_agent(obj(R"({"name": "gpt", "prompt": "You are {{agent_name}}. Passages: {{context}}", "knowledge_bases": ["kb"], "model": {"base_url": "http://llm.local/v1", "model": "m1", "api_key_setting": "openai_key"}})")));
    auto r = ask("gpt", "Чи безкоштовна доставка у відділення?");
    EXPECT_EQ(r.answered_by, "provider");
    EXPECT_EQ(r.answer, "LLM: Чи безкоштовна доставка у відділення?");
    EXPECT_EQ(llm.last.api_key, "sk-test");
    EXPECT_EQ(llm.last.model, "m1");
    EXPECT_NE(llm.last.messages.at(0).content.find("You are gpt. Passages: [1]"), std::string::npos);
    llm.fail = true;
    EXPECT_EQ(thrown([&] { ask("gpt", "Чи безкоштовна доставка у відділення?"); }).code, "provider_error");
}

}  // namespace
}  // namespace parley::knowledge
