#include "knowledge/internal/sources.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "knowledge/knowledge.h"

namespace parley::knowledge::internal {

namespace fs = std::filesystem;

std::string sha256_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(size * 2);
    for (unsigned i = 0; i < size; ++i) {
        out += kHex[digest[i] >> 4];
        out += kHex[digest[i] & 0xF];
    }
    return out;
}

std::string check_source_url(std::string_view url) {
    if (url.size() > kMaxLocationBytes) return fmt::format("a URL may be at most {} bytes", kMaxLocationBytes);
    std::string_view rest;
    if (url.rfind("https://", 0) == 0) {
        rest = url.substr(8);
    } else if (url.rfind("http://", 0) == 0) {
        rest = url.substr(7);
    } else {
        return "a URL source must start with http:// or https://";
    }
    for (unsigned char c : url) {
        if (c <= 0x20 || c == 0x7F) return "a URL may not contain spaces or control characters";
    }
    auto end = rest.find_first_of("/?#");
    std::string_view authority = rest.substr(0, end);
    if (authority.empty()) return "the URL has no host";
    if (authority.find('@') != std::string_view::npos) {
        return "the URL may not carry a user name or password (use a URL the server can read as it is)";
    }
    return {};
}

namespace {

bool within(const fs::path& root, const fs::path& path) {
    auto r = root.begin();
    auto p = path.begin();
    for (; r != root.end(); ++r, ++p) {
        if (r->empty()) continue;  // a trailing separator of the root
        if (p == path.end() || *r != *p) return false;
    }
    return true;
}

fs::path canonical_root(const std::string& root) {
    std::error_code ec;
    fs::path canonical = fs::canonical(root, ec);
    if (ec) throw FolderError("folder_not_found", fmt::format("the sync root '{}' does not exist", root));
    return canonical;
}

}  // namespace

fs::path resolve_folder(const std::string& root, std::string_view location) {
    fs::path base = canonical_root(root);
    if (location.empty() || location.size() > kMaxLocationBytes || location.find('\0') != std::string_view::npos) {
        throw FolderError("path_outside_root", "the folder must be a path under the sync root");
    }
    fs::path given(location);
    fs::path joined = (given.is_absolute() ? given : fs::path(root) / given).lexically_normal();
    fs::path lexical_root = fs::path(root).lexically_normal();
    if (!within(lexical_root, joined) && !within(base, joined)) {
        throw FolderError("path_outside_root", "the folder must be a path under the sync root");
    }
    std::error_code ec;
    fs::path canonical = fs::canonical(joined, ec);
    if (ec) throw FolderError("folder_not_found", fmt::format("the folder '{}' does not exist", location.substr(0, 200)));
    if (!within(base, canonical)) {
        throw FolderError("path_outside_root", "the folder leads out of the sync root (through a symlink)");
    }
    if (!fs::is_directory(canonical, ec)) {
        throw FolderError("folder_not_found", fmt::format("'{}' is not a folder", location.substr(0, 200)));
    }
    return canonical.lexically_relative(base);
}

FolderListing list_folder(const std::string& root, const fs::path& folder, std::size_t max_files, int max_depth) {
    FolderListing out;
    fs::path base;
    try {
        base = canonical_root(root);
    } catch (const FolderError& e) {
        out.error = e.what();
        return out;
    }
    fs::path start = folder.empty() || folder == "." ? base : base / folder;
    std::error_code ec;
    // The folder itself must still be a real folder inside the root (not replaced by a symlink meanwhile).
    fs::path canonical = fs::canonical(start, ec);
    if (ec || !within(base, canonical) || !fs::is_directory(canonical, ec)) {
        out.error = "the folder is missing or leads out of the sync root";
        return out;
    }
    fs::recursive_directory_iterator it(start, fs::directory_options::skip_permission_denied, ec);
    if (ec) {
        out.error = fmt::format("the folder cannot be read: {}", ec.message());
        return out;
    }
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) {
            out.error = fmt::format("the folder cannot be read: {}", ec.message());
            return out;
        }
        const fs::directory_entry& entry = *it;
        std::string name = entry.path().filename().string();
        std::string key = entry.path().lexically_relative(start).generic_string();
        if (!name.empty() && name[0] == '.') {
            if (entry.is_directory(ec) && !entry.is_symlink(ec)) it.disable_recursion_pending();
            continue;
        }
        if (entry.is_symlink(ec)) {
            if (fs::is_directory(entry.path(), ec)) {
                out.skipped.emplace_back(key, "symlinked folders are not followed");
                continue;
            }
        } else if (entry.is_directory(ec)) {
            if (it.depth() + 1 >= max_depth) {
                it.disable_recursion_pending();
                out.skipped.emplace_back(key, fmt::format("deeper than {} folder levels", max_depth));
            }
            continue;
        } else if (!entry.is_regular_file(ec)) {
            out.skipped.emplace_back(key, "not a regular file");
            continue;
        }
        if (out.files.size() == max_files) {
            out.error = fmt::format("the folder holds more than {} files", max_files);
            out.files.clear();
            return out;
        }
        out.files.push_back(FolderFile{key, entry.path().lexically_relative(base)});
    }
    std::sort(out.files.begin(), out.files.end(), [](const FolderFile& a, const FolderFile& b) { return a.key < b.key; });
    return out;
}

std::optional<std::string> read_beneath(const std::string& root, const fs::path& relative, std::size_t max_bytes,
                                        std::string& error) {
    int root_fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) {
        error = "the sync root cannot be opened";
        return std::nullopt;
    }
    struct open_how how {};
    how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    auto open_beneath = [&](const fs::path& path) {
        std::string rel = path.generic_string();
        return static_cast<int>(::syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how));
    };
    int fd = open_beneath(relative);
    int open_errno = errno;
    if (fd < 0 && open_errno == EXDEV) {
        // RESOLVE_BENEATH refuses every absolute symlink, also one that points inside the root: resolve it
        // and, when the target is inside, open the resolved path (still beneath the root).
        std::error_code ec;
        fs::path base = fs::canonical(root, ec);
        fs::path target = ec ? fs::path() : fs::canonical(base / relative, ec);
        if (!ec && within(base, target)) {
            fd = open_beneath(target.lexically_relative(base));
            open_errno = errno;
        }
    }
    ::close(root_fd);
    if (fd < 0) {
        error = open_errno == EXDEV ? "a symlink leads out of the sync root"
                                    : fmt::format("cannot be opened: {}", std::strerror(open_errno));
        return std::nullopt;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        error = "not a regular file";
        return std::nullopt;
    }
    if (static_cast<std::uintmax_t>(st.st_size) > max_bytes) {
        ::close(fd);
        error = fmt::format("larger than {} MB", max_bytes >> 20);
        return std::nullopt;
    }
    std::string content;
    content.resize(static_cast<std::size_t>(st.st_size));
    std::size_t done = 0;
    while (true) {
        if (done == content.size()) content.resize(std::min(max_bytes + 1, content.size() + 65536));
        if (done == content.size()) break;  // grown to the limit
        ssize_t n = ::read(fd, content.data() + done, content.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            ::close(fd);
            error = fmt::format("cannot be read: {}", std::strerror(errno));
            return std::nullopt;
        }
        if (n == 0) break;
        done += static_cast<std::size_t>(n);
    }
    ::close(fd);
    content.resize(done);
    if (content.size() > max_bytes) {
        error = fmt::format("larger than {} MB", max_bytes >> 20);
        return std::nullopt;
    }
    return content;
}

}  // namespace parley::knowledge::internal
