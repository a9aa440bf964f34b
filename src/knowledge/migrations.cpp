#include "knowledge/knowledge.h"

namespace parley::knowledge {

std::vector<store::Migration> migrations() {
    return {
        {"knowledge", 1, "knowledge bases, documents, chunks, indexes, agents",
         R"sql(
CREATE TABLE knowledge_bases (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    description         TEXT NOT NULL DEFAULT '',
    chunk_size          INTEGER NOT NULL,
    chunk_overlap       INTEGER NOT NULL,
    split_on_headings   INTEGER NOT NULL,
    split_on_paragraphs INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE TABLE knowledge_documents (
    id           TEXT PRIMARY KEY,
    kb_id        TEXT NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    format       TEXT NOT NULL,
    content_type TEXT NOT NULL DEFAULT '',
    size         INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'ready', 'error')),
    error        TEXT,
    chunks       INTEGER NOT NULL DEFAULT 0,
    revision     INTEGER NOT NULL DEFAULT 1,
    content      BLOB NOT NULL,              -- the uploaded file: re-indexing and crash recovery need it
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    indexed_at   INTEGER
);
CREATE INDEX knowledge_documents_by_kb ON knowledge_documents (kb_id, id);
CREATE INDEX knowledge_documents_pending ON knowledge_documents (status) WHERE status IN ('queued', 'processing');

-- One row per chunk: its text and the analyzed forms both FTS5 indexes are built from (external content).
CREATE TABLE knowledge_chunks (
    id          INTEGER PRIMARY KEY,
    kb_id       TEXT NOT NULL,
    document_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    heading     TEXT NOT NULL,
    text        TEXT NOT NULL,
    head_words  TEXT NOT NULL,
    words       TEXT NOT NULL,
    head_stems  TEXT NOT NULL,
    stems       TEXT NOT NULL
);
CREATE INDEX knowledge_chunks_by_document ON knowledge_chunks (document_id, seq);
CREATE VIRTUAL TABLE knowledge_fts_words USING fts5(kb_id, head_words, words, content='knowledge_chunks',
    content_rowid='id', tokenize='ascii');
CREATE VIRTUAL TABLE knowledge_fts_stems USING fts5(kb_id, head_stems, stems, content='knowledge_chunks',
    content_rowid='id', tokenize='ascii');
INSERT INTO knowledge_fts_words (knowledge_fts_words, rank) VALUES ('rank', 'bm25(0.0, 2.0, 1.0)');
INSERT INTO knowledge_fts_stems (knowledge_fts_stems, rank) VALUES ('rank', 'bm25(0.0, 2.0, 1.0)');

CREATE TABLE knowledge_agents (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    description     TEXT NOT NULL DEFAULT '',
    prompt          TEXT NOT NULL DEFAULT '',
    model           TEXT NOT NULL DEFAULT '{}',  -- JSON; {} = built-in extractive answerer
    k               INTEGER NOT NULL,
    escalation      TEXT NOT NULL DEFAULT '{}',  -- JSON {min_score, human_request, phrases}
    fallback_answer TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE TABLE knowledge_agent_bases (
    agent_id TEXT NOT NULL REFERENCES knowledge_agents(id) ON DELETE CASCADE,
    kb_id    TEXT NOT NULL REFERENCES knowledge_bases(id),
    position INTEGER NOT NULL,
    PRIMARY KEY (agent_id, kb_id)
);
CREATE INDEX knowledge_agent_bases_by_kb ON knowledge_agent_bases (kb_id);
)sql"},
        {"knowledge", 2, "sync sources, content hashes, embeddings, agent usage",
         R"sql(
ALTER TABLE knowledge_bases ADD COLUMN embeddings TEXT NOT NULL DEFAULT '{}';  -- JSON; {} = BM25 only
ALTER TABLE knowledge_documents ADD COLUMN source_id TEXT;
ALTER TABLE knowledge_documents ADD COLUMN source_key TEXT;
ALTER TABLE knowledge_documents ADD COLUMN content_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE knowledge_documents ADD COLUMN embedding_status TEXT NOT NULL DEFAULT 'none';
ALTER TABLE knowledge_documents ADD COLUMN embedding_error TEXT;
CREATE UNIQUE INDEX knowledge_documents_by_source ON knowledge_documents (source_id, source_key)
    WHERE source_id IS NOT NULL;

CREATE TABLE knowledge_sources (
    id               TEXT PRIMARY KEY,
    kb_id            TEXT NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('url', 'folder')),
    location         TEXT NOT NULL,
    interval_s       INTEGER NOT NULL,
    active           INTEGER NOT NULL,
    next_run_at      INTEGER NOT NULL,
    run_requested    INTEGER NOT NULL DEFAULT 0,
    running_until    INTEGER,            -- lease of the node running it; NULL when idle
    last_run_at      INTEGER,
    last_finished_at INTEGER,
    last_result      TEXT,               -- ok | error
    last_error       TEXT,
    last_counts      TEXT NOT NULL DEFAULT '{}',  -- JSON {added, updated, removed, unchanged, skipped, skipped_files}
    duration_ms      INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (kb_id, kind, location)
);
CREATE INDEX knowledge_sources_due ON knowledge_sources (next_run_at) WHERE active = 1 OR run_requested = 1;

-- One vector per chunk (float32, unit length). The id is the hnswlib label: AUTOINCREMENT never reuses one.
CREATE TABLE knowledge_embeddings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id    INTEGER NOT NULL UNIQUE,
    kb_id       TEXT NOT NULL,
    document_id TEXT NOT NULL,
    vector      BLOB NOT NULL
);
CREATE INDEX knowledge_embeddings_by_kb ON knowledge_embeddings (kb_id, id);
CREATE INDEX knowledge_embeddings_by_document ON knowledge_embeddings (document_id);

CREATE TABLE knowledge_agent_usage (
    agent_id       TEXT NOT NULL REFERENCES knowledge_agents(id) ON DELETE CASCADE,
    day            TEXT NOT NULL,        -- YYYY-MM-DD (UTC)
    asks           INTEGER NOT NULL DEFAULT 0,
    provider_calls INTEGER NOT NULL DEFAULT 0,
    errors         INTEGER NOT NULL DEFAULT 0,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, day)
);
)sql"},
    };
}

}  // namespace parley::knowledge
