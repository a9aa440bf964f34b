// registered_users__get / registered_users__set: the scenario's access to the client card (CONTRACT.md events).
#include <fmt/format.h>

#include "clients/clients.h"
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

/// The card as state: every standard and custom field (what {{phone}}, {{segment}} read after the action).
json::object card_state(const Client& c) {
    json::object out = c.to_json();
    out.erase("created_at");
    out.erase("last_seen_at");
    out["client_id"] = c.id;
    out.erase("id");
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
        // One indexed point read on the calling thread (microseconds; no fsync, no network).
        store_.read([&](store::Tx& tx) {
            if (!id.empty()) {
                found = find_client(tx, id);
            } else {
                auto row = tx.query_one(phone.empty() ? "SELECT id FROM clients WHERE email = ? ORDER BY last_seen_at DESC LIMIT 1"
                                                      : "SELECT id FROM clients WHERE phone = ? ORDER BY last_seen_at DESC LIMIT 1",
                                        {phone.empty() ? email : phone});
                if (row) found = find_client(tx, row->text(0));
            }
        });
        actions::ActionResult result;
        if (!found) {
            result.event = "not_found";
        } else {
            result.event = "found";
            if (save_as.empty()) {
                result.state = card_state(*found);
            } else {
                result.state = json::object{{save_as, card_state(*found)}};
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
        store_.write(
            [client_id = call.client_id, values, custom, now, found](store::Tx& tx) {
                auto c = find_client(tx, client_id);
                *found = c.has_value();
                if (!c) return;
                for (const auto& kv : values) {
                    if (!is_standard(kv.key())) continue;
                    std::string text = kv.value().is_string() ? std::string(kv.value().get_string()) : json::serialize(kv.value());
                    tx.exec(fmt::format("UPDATE clients SET {} = ? WHERE id = ?", std::string(kv.key())), {text, client_id});
                }
                json::object fields = c->fields;
                for (const auto& kv : custom) fields[kv.key()] = kv.value();
                std::string serialized = json::serialize(fields);
                if (serialized.size() > kMaxFieldsBytes) throw core::TooLarge("client fields are too large", "too_large");
                tx.exec("UPDATE clients SET fields = ?, last_seen_at = ? WHERE id = ?", {serialized, now, client_id});
            },
            [found, values, done = std::move(done)](std::exception_ptr error) {
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
