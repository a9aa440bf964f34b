#include "knowledge/test_util.h"

#include <zip.h>

#include <fstream>
#include <sstream>

#include "core/ids.h"

namespace parley::knowledge::testing {

KnowledgeTest::KnowledgeTest(KnowledgeOptions knowledge_options, bool with_sync_root)
    : guard_(boost::asio::make_work_guard(io_)) {
    dir_ = std::filesystem::temp_directory_path() / ("parley-knowledge-" + core::random_hex(8));
    std::filesystem::create_directories(dir_);
    sync_root_ = dir_ / "sync";
    std::filesystem::create_directories(sync_root_);
    if (with_sync_root) knowledge_options.sync_root = sync_root_.string();
    store::StoreOptions options;
    options.path = (dir_ / "parley.db").string();
    options.durable = false;
    options.readers = 4;
    store_ = store::Store::open_sqlite(options, migrations());
    service_ = std::make_unique<KnowledgeService>(*store_, clock_, knowledge_options);
    thread_ = std::thread([this] { io_.run(); });
}

KnowledgeTest::~KnowledgeTest() {
    guard_.reset();
    io_.stop();
    thread_.join();
    service_.reset();
    store_->close();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

void KnowledgeTest::restart(KnowledgeOptions options) {
    service_->stop();
    service_.reset();
    service_ = std::make_unique<KnowledgeService>(*store_, clock_, options);
}

KnowledgeBase KnowledgeTest::make_base(const std::string& spec) {
    return run(service_->create_base(boost::json::parse(spec).as_object()));
}

Document KnowledgeTest::upload(const std::string& kb, const std::string& name, std::string content,
                               const std::string& content_type) {
    Document d = run(service_->add_document(kb, Upload{name, content_type, std::move(content)}));
    EXPECT_TRUE(service_->wait_idle(std::chrono::seconds(60)));
    return service_->get_document(kb, d.id);
}

void KnowledgeTest::upload_dir(const std::string& kb, const std::filesystem::path& dir) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) run(service_->add_document(kb, Upload{f.filename().string(), "", read_file(f)}));
    ASSERT_TRUE(service_->wait_idle(std::chrono::seconds(120)));
}

AskResult KnowledgeTest::ask(const std::string& agent, const std::string& input) {
    AskRequest r;
    r.agent = agent;
    r.input = input;
    return run(service_->ask(std::move(r)));
}

std::int64_t KnowledgeTest::count(const std::string& sql) {
    return store::read_value(*store_, [&](store::Tx& tx) { return tx.query_one(sql)->integer(0); });
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::string make_pdf(const std::vector<std::string>& lines) {
    std::string stream = "BT /F1 12 Tf 72 720 Td 14 TL\n";
    for (const auto& line : lines) {
        std::string escaped;
        for (char c : line) {
            if (c == '(' || c == ')' || c == '\\') escaped.push_back('\\');
            escaped.push_back(c);
        }
        stream += "(" + escaped + ") Tj T*\n";
    }
    stream += "ET\n";
    std::vector<std::string> objects = {
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        "<< /Length " + std::to_string(stream.size()) + " >>\nstream\n" + stream + "endstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    };
    std::string pdf = "%PDF-1.4\n";
    std::vector<std::size_t> offsets;
    for (std::size_t i = 0; i < objects.size(); ++i) {
        offsets.push_back(pdf.size());
        pdf += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
    }
    std::size_t xref = pdf.size();
    pdf += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
    for (auto off : offsets) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%010zu 00000 n \n", off);
        pdf += buf;
    }
    pdf += "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R >>\nstartxref\n" +
           std::to_string(xref) + "\n%%EOF\n";
    return pdf;
}

std::string make_docx(const std::string& document_xml) {
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* out = zip_source_buffer_create(nullptr, 0, 0, &error);
    zip_source_keep(out);
    zip_t* archive = zip_open_from_source(out, ZIP_TRUNCATE, &error);
    auto add = [&](const char* name, const std::string& data) {
        auto* copy = new std::string(data);
        zip_source_t* src = zip_source_buffer(archive, copy->data(), copy->size(), 0);
        zip_file_add(archive, name, src, ZIP_FL_OVERWRITE);
        return copy;
    };
    std::vector<std::string*> keep;
    keep.push_back(add("[Content_Types].xml",
                       R"(<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"></Types>)"));
    keep.push_back(add("word/document.xml", document_xml));
    zip_close(archive);
    zip_source_open(out);
    zip_source_seek(out, 0, SEEK_END);
    zip_int64_t size = zip_source_tell(out);
    zip_source_seek(out, 0, SEEK_SET);
    std::string bytes(static_cast<std::size_t>(size), '\0');
    zip_source_read(out, bytes.data(), static_cast<zip_uint64_t>(size));
    zip_source_close(out);
    zip_source_free(out);
    for (auto* k : keep) delete k;
    zip_error_fini(&error);
    return bytes;
}

std::string docx_xml(const std::vector<std::string>& paragraphs) {
    std::string xml = R"(<?xml version="1.0" encoding="UTF-8" standalone="yes"?>)"
                      R"(<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>)";
    for (const auto& p : paragraphs) {
        if (p.rfind("# ", 0) == 0) {
            xml += R"(<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>)" + p.substr(2) + "</w:t></w:r></w:p>";
        } else {
            xml += "<w:p><w:r><w:t xml:space=\"preserve\">" + p + "</w:t></w:r></w:p>";
        }
    }
    xml += "</w:body></w:document>";
    return xml;
}

}  // namespace parley::knowledge::testing
