// Retrieval quality on the shipped evaluation set: the sample documents of tests/data/knowledge/docs in one
// knowledge base with default chunking, every question of eval.json searched with k = 5. Prints recall@1,
// recall@5 and MRR (overall and per language) and the misses; asserts recall@5 >= 0.9. An agent over the same
// base must answer the questions it finds and escalate the unanswerable ones.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdio>

#include "knowledge/test_util.h"

namespace parley::knowledge {
namespace {

namespace json = boost::json;

class EvalTest : public testing::KnowledgeTest {};

struct Tally {
    int n = 0;
    int at1 = 0;
    int at5 = 0;
    double rr = 0;
};

std::string unescape(std::string s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        out.push_back(s[i]);
    }
    return out;
}

TEST_F(EvalTest, RecallAtFiveIsAtLeastNinetyPercent) {
    const std::filesystem::path data = PARLEY_KNOWLEDGE_DATA;
    make_base(R"({"name": "lastivka"})");
    upload_dir("lastivka", data / "docs");
    for (const auto& d : service_->list_documents("lastivka", "", 100).items) {
        ASSERT_EQ(d.status, DocumentStatus::kReady) << d.name << ": " << d.error.value_or("");
    }
    auto kb = service_->get_base("lastivka");
    auto eval = json::parse(testing::read_file(data / "eval.json")).as_object();

    std::map<std::string, Tally> tallies;
    for (const auto& item : eval.at("questions").as_array()) {
        const auto& q = item.as_object();
        std::string question(q.at("q").as_string());
        std::string doc(q.at("doc").as_string());
        std::string passage = unescape(std::string(q.at("passage").as_string()));
        std::string lang(q.at("lang").as_string());
        auto hits = service_->search({kb.id}, question, 5);
        int rank = 0;
        for (std::size_t i = 0; i < hits.size(); ++i) {
            if (hits[i].document_name == doc && hits[i].text.find(passage) != std::string::npos) {
                rank = static_cast<int>(i) + 1;
                break;
            }
        }
        for (auto* t : {&tallies[lang], &tallies["all"]}) {
            t->n++;
            t->at1 += rank == 1;
            t->at5 += rank >= 1;
            t->rr += rank ? 1.0 / rank : 0.0;
        }
        if (rank != 1) {
            std::printf("  %s [%s] rank %d: %s\n    top: %s | %.80s\n", rank ? "late" : "MISS", lang.c_str(), rank,
                        question.c_str(), hits.empty() ? "-" : hits[0].document_name.c_str(),
                        hits.empty() ? "" : hits[0].text.c_str());
        }
    }
    for (const auto& [lang, t] : tallies) {
        std::printf("%-4s questions %3d  recall@1 %.3f  recall@5 %.3f  MRR %.3f\n", lang.c_str(), t.n,
                    static_cast<double>(t.at1) / t.n, static_cast<double>(t.at5) / t.n, t.rr / t.n);
    }
    const auto& all = tallies["all"];
    ASSERT_GE(all.n, 100);
    EXPECT_GE(static_cast<double>(all.at5) / all.n, 0.9);

    // The built-in agent: answers from the passage it found, escalates what the base cannot answer.
    run(service_->create_agent(json::parse(R"({"name": "faq", "prompt": "", "knowledge_bases": ["lastivka"]})").as_object()));
    int answered = 0;
    for (const auto& item : eval.at("questions").as_array()) {
        auto r = ask("faq", std::string(item.at("q").as_string()));
        answered += !r.escalate;
    }
    int escalated = 0;
    for (const auto& item : eval.at("unanswerable").as_array()) {
        auto r = ask("faq", std::string(item.at("q").as_string()));
        std::printf("  unanswerable: %s → escalate %d (%s) top score %.3f\n",
                    std::string(item.at("q").as_string()).c_str(), r.escalate, r.escalation_reason.c_str(),
                    r.sources.empty() ? 0.0 : r.sources.front().score);
        escalated += r.escalate;
    }
    std::printf("agent: answered %d of %zu answerable, escalated %d of %zu unanswerable\n", answered,
                eval.at("questions").as_array().size(), escalated, eval.at("unanswerable").as_array().size());
    EXPECT_GE(answered, static_cast<int>(eval.at("questions").as_array().size() * 9 / 10));
    EXPECT_EQ(escalated, static_cast<int>(eval.at("unanswerable").as_array().size()));
}

}  // namespace
}  // namespace parley::knowledge
