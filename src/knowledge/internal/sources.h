/// Sync sources' file-system and URL side: SHA-256 content hashes, URL checks, folder paths confined to the
/// sync root (lexically and after symlinks), walking a folder and reading its files with openat2
/// RESOLVE_BENEATH so that no symlink (even one swapped in during a sync) can lead outside the root.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace parley::knowledge::internal {

/// Lower-case hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

/// "" when `url` is an acceptable URL source (http/https, a host, no spaces or control characters, no user
/// information, at most kMaxLocationBytes), else why not.
std::string check_source_url(std::string_view url);

/// A folder location that may not be used. `code`: path_outside_root | folder_not_found.
class FolderError : public std::runtime_error {
public:
    FolderError(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
    const std::string& code() const { return code_; }

private:
    std::string code_;
};

/// The folder `location` (relative to `root`, or absolute) as a path relative to the canonical root ("" for
/// the root itself). Refuses `..` that climbs out, absolute paths elsewhere, and paths whose symlinks lead
/// out of the root (path_outside_root); a missing folder or a file (folder_not_found).
std::filesystem::path resolve_folder(const std::string& root, std::string_view location);

struct FolderFile {
    std::string key;                      ///< path relative to the source's folder, '/'-separated
    std::filesystem::path relative_path;  ///< relative to the root
};
struct FolderListing {
    std::vector<FolderFile> files;                              ///< sorted by key
    std::vector<std::pair<std::string, std::string>> skipped;  ///< key, reason
    std::string error;  ///< non-empty: the folder could not be walked (nothing may be removed then)
};
/// Regular files (and symlinks, checked when read) under the folder, at most `max_depth` levels down;
/// hidden entries (".name") are left out, symlinked folders are not followed. More than `max_files` → error.
FolderListing list_folder(const std::string& root, const std::filesystem::path& folder, std::size_t max_files,
                          int max_depth);

/// Reads a file below the root (openat2 RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): nullopt with `error` set
/// when it escapes the root, is not a regular file, or is larger than `max_bytes`.
std::optional<std::string> read_beneath(const std::string& root, const std::filesystem::path& relative,
                                        std::size_t max_bytes, std::string& error);

}  // namespace parley::knowledge::internal
