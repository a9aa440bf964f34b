/// A ChannelDirectory over an in-memory map, for tests, benchmarks and the browser-test server (the real server
/// adapts channels::ChannelService with RegistryDirectory instead).
#pragma once

#include <map>
#include <mutex>

#include "widget/widget.h"

namespace parley::widget::testing {

/// Thread-safe.
class MapDirectory final : public ChannelDirectory {
public:
    void put(WidgetChannel c) {
        std::lock_guard lock(mutex_);
        channels_[c.id] = std::move(c);
    }
    std::optional<WidgetChannel> find(std::string_view id) const override {
        std::lock_guard lock(mutex_);
        auto it = channels_.find(std::string(id));
        if (it == channels_.end()) return std::nullopt;
        return it->second;
    }
    std::vector<std::string> active_ids() const override {
        std::lock_guard lock(mutex_);
        std::vector<std::string> out;
        for (const auto& [id, c] : channels_) {
            if (!c.disabled) out.push_back(id);
        }
        return out;
    }

private:
    mutable std::mutex mutex_;
    std::map<std::string, WidgetChannel> channels_;
};

}  // namespace parley::widget::testing
