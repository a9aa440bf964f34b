// registered_users__get / registered_users__set: the scenario's access to the client card (CONTRACT.md events).
#include <fmt/format.h>

#include "clients/clients.h"
#include "clients/internal/filter.h"
#include "clients/internal/ops.h"
#include "core/error.h"

namespace parley::clients {

namespace {

constexpr std::string_view kStandard[] = {"name", "phone", "email", "language"};

bool is_standard(std::string_view key) {
    for (auto k : kStandard) {
        if (k == key) return true;
    }
    return false;
}

std::string text_param(const json::object& params, std::string_view key) {
    const auto* v = params.if_contains(key);
    if (!v) return {};
    if (v->is_string()) return std::string(v->get_string());
    if (v->is_int64()) return std::to_string(v->get_int64());
    return {};
}

/// The card as state: every standard and custom field (what {{phone}}, {{segment}} read after the action) and,
/// unless a custom field has that name, `segments`: the saved segments the client belongs to.
json::object card_state(store::Tx& tx, const Client& c) {
    json::object out = c.to_json();
    out.erase("created_at");
    out.erase("last_seen_at");
    out["client_id"] = c.id;
    out.erase("id");
    if (!out.contains("segments")) {
        out["segments"] = internal::segment_names(tx, internal::probe_schema(tx), internal::field_map(tx), c.id);
    }
    return out;
}

class GetAction final : public actions::BasicAction {
public:
    explicit GetAction(store::Store& store)
        : BasicAction("registered_users__get",
                      json::object{{"type", "object"},
                                   {"properties", json::object{{"id", json::object{{"type", "string"}}},
                                                               {"phone", json::object{{"type", "string"}}},
                                                               {"email", json::object{{"type", "string"}}},
                                                               {"save_as", json::object{{"type", "string"}}}}}},
                      {"found", "not_found", "error"}),
          store_(store) {}

    void run(actions::ActionCall call, actions::ActionDone done) override {
        std::string id = text_param(call.params, "id");
        std::string phone = text_param(call.params, "phone");
        std::string email = text_param(call.params, "email");
        std::string save_as = text_param(call.params, "save_as");
        if (id.empty() && phone.empty() && email.empty()) id = call.client_id;
        std::optional<Client> found;
        json::object card;
        // Indexed point reads on the calling thread (microseconds; no fsync, no network). Phones and e-mails match
        // by their normalised keys (`+380 50 111 22 33` finds `380501112233`), else as written.
        store_.read([&](store::Tx& tx) {
            if (!id.empty()) {
                found = find_client(tx, id);
            } else {
                std::string key = phone.empty() ? email_key(email) : phone_key(phone);
                std::optional<store::Row> row;
                if (!key.empty()) {
                    row = tx.query_one(phone.empty() ? "SELECT id FROM clients WHERE email_key = ? ORDER BY created_at, id LIMIT 1"
                                                     : "SELECT id FROM clients WHERE phone_key = ? ORDER BY created_at, id LIMIT 1",
                                       {key});
                }
                if (!row) {
                    row = tx.query_one(phone.empty() ? "SELECT id FROM clients WHERE email = ? AND email <> '' ORDER BY last_seen_at DESC LIMIT 1"
                                                     : "SELECT id FROM clients WHERE phone = ? AND phone <> '' ORDER BY last_seen_at DESC LIMIT 1",
                                       {phone.empty() ? email : phone});
                }
                if (row) found = find_client(tx, row->text(0));
            }
            if (found) card = card_state(tx, *found);
        });
        actions::ActionResult result;
        if (!found) {
            result.event = "not_found";
        } else {
            result.event = "found";
            if (save_as.empty()) {
                result.state = std::move(card);
            } else {
                result.state = json::object{{save_as, std::move(card)}};
            }
        }
        done(std::move(result));
    }

private:
    store::Store& store_;
};

class SetAction final : public actions::BasicAction {
public:
    SetAction(store::Store& store, const core::Clock& clock)
        : BasicAction("registered_users__set",
                      json::object{{"type", "object"},
                                   {"properties", json::object{{"values", json::object{{"type", "object"}}}}},
                                   {"description", "values (or the params themselves) set on the dialog's client: name, "
                                                   "phone, email, language and any custom field"}},
                      {"success", "error"}),
          store_(store),
          clock_(clock) {}

    void run(actions::ActionCall call, actions::ActionDone done) override {
        if (call.client_id.empty()) {
            done(actions::ActionResult::failure("bad_params", "the action runs only for a dialog's client"));
            return;
        }
        json::object values;
        if (const auto* v = call.params.if_contains("values"); v && v->is_object()) {
            values = v->get_object();
        } else {
            values = call.params;
        }
        NewClient check;
        json::object custom;
        for (const auto& kv : values) {
            std::string key(kv.key());
            std::string text = kv.value().is_string() ? std::string(kv.value().get_string()) : json::serialize(kv.value());
            if (key == "name") check.name = text;
            else if (key == "phone") check.phone = text;
            else if (key == "email") check.email = text;
            else if (key == "language") check.language = text;
            else if (key.empty() || key.size() > 64) {
                done(actions::ActionResult::failure("bad_params", "field names are 1 to 64 bytes"));
                return;
            } else custom[key] = kv.value();
        }
        check.fields = custom;
        try {
            validate_new_client(check);
        } catch (const core::Error& e) {
            done(actions::ActionResult::failure("bad_params", e.what()));
            return;
        }
        std::int64_t now = clock_.now_ms();
        auto found = std::make_shared<bool>(false);
        auto problem = std::make_shared<std::string>();
        store_.write(
            [client_id = call.client_id, values, custom, now, found, problem](store::Tx& tx) {
                problem->clear();
                auto c = find_client(tx, client_id);  // also follows a merge
                *found = c.has_value();
                if (!c) return;
                for (const auto& kv : values) {
                    if (!is_standard(kv.key())) continue;
                    std::string text = kv.value().is_string() ? std::string(kv.value().get_string()) : json::serialize(kv.value());
                    if (kv.key() == "name") c->name = text;
                    else if (kv.key() == "phone") c->phone = text;
                    else if (kv.key() == "email") c->email = text;
                    else c->language = text;
                }
                // Administrator-defined fields are typed: text from templates converts ("12" → 12); what does not fit
                // fails the action and writes nothing. Other keys are stored as given.
                internal::FieldMap defs = internal::field_map(tx);
                for (const auto& kv : custom) {
                    if (kv.value().is_null()) {
                        c->fields.erase(kv.key());
                        continue;
                    }
                    json::value v = kv.value();
                    if (auto it = defs.find(kv.key()); it != defs.end()) {
                        if (auto p = internal::check_value(it->second, v, true)) {
                            *problem = fmt::format("field '{}' {}", std::string_view(kv.key()), *p);
                            return;
                        }
                    }
                    c->fields[kv.key()] = std::move(v);
                }
                if (json::serialize(c->fields).size() > kMaxFieldsBytes) throw core::TooLarge("client fields are too large", "too_large");
                c->last_seen_at = now;
                internal::save_client(tx, *c);
                internal::link_by_keys(tx, c->id, now);  // a phone or e-mail another card has: one client
            },
            [found, problem, values, done = std::move(done)](std::exception_ptr error) {
                if (error) {
                    std::string what = "store error";
                    try {
                        std::rethrow_exception(error);
                    } catch (const std::exception& e) {
                        what = e.what();
                    }
                    done(actions::ActionResult::failure("store_error", what));
                    return;
                }
                if (!*found) {
                    done(actions::ActionResult::failure("client_not_found", "the dialog's client no longer exists"));
                    return;
                }
                if (!problem->empty()) {
                    done(actions::ActionResult::failure("bad_params", *problem));
                    return;
                }
                actions::ActionResult result;
                result.event = "success";
                result.state = values;  // usable at once as {{phone}}, {{segment}}, ...
                done(std::move(result));
            });
    }

private:
    store::Store& store_;
    const core::Clock& clock_;
};

}  // namespace

void register_actions(actions::ActionRegistry& registry, store::Store& store, const core::Clock& clock) {
    registry.add(std::make_shared<GetAction>(store));
    registry.add(std::make_shared<SetAction>(store, clock));
}

}  // namespace parley::clients
