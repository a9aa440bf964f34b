/// The channel row as the service holds it (credentials decrypted); shared by service.cpp and runtime.cpp.
#pragma once

#include <algorithm>
#include <string>

#include "channels/channels.h"

namespace parley::channels {

/// A channel row with its credentials decrypted.
struct ChannelService::Stored {
    std::string id;
    std::string bot_id;
    std::string kind;
    json::object credentials;
    std::string api_base_url;
    std::string status;
    std::string last_error;
    std::string webhook_secret;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;

    std::string token() const {
        auto it = credentials.find("token");
        return it != credentials.end() && it->value().is_string() ? std::string(it->value().get_string()) : "";
    }
    std::string mode() const {
        if (kind != "telegram") return {};
        auto it = credentials.find("mode");
        return it != credentials.end() && it->value().is_string() ? std::string(it->value().get_string()) : "webhook";
    }
    Channel view() const {
        Channel c{id, bot_id, kind, {}, mode(), find_adapter(kind) != nullptr, api_base_url, status, last_error,
                  created_at, updated_at};
        for (const auto& kv : credentials) c.credential_keys.emplace_back(kv.key());
        std::sort(c.credential_keys.begin(), c.credential_keys.end());
        return c;
    }
};

}  // namespace parley::channels
