#include "auth/internal/crypto.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "core/ids.h"

namespace parley::auth::internal {
namespace {

void ensure_sodium() {
    static const int rc = sodium_init();  // thread-safe, idempotent
    if (rc < 0) throw std::runtime_error("libsodium failed to initialise");
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

std::string sha256_hex(std::string_view text) {
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(text.data()), text.size());
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out(2 * sizeof digest, '0');
    for (std::size_t i = 0; i < sizeof digest; ++i) {
        out[2 * i] = kHex[digest[i] >> 4];
        out[2 * i + 1] = kHex[digest[i] & 0xF];
    }
    return out;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

PasswordCost PasswordCost::interactive() {
    return {crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE};
}

PasswordCost PasswordCost::minimal() { return {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN}; }

PasswordHasher::PasswordHasher(PasswordCost cost) : cost_(cost) { ensure_sodium(); }

std::string PasswordHasher::hash(std::string_view password) const {
    char out[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(out, password.data(), password.size(), cost_.opslimit, cost_.memlimit) != 0) {
        throw std::runtime_error("password hashing ran out of memory");
    }
    return out;
}

const std::string& PasswordHasher::dummy_hash() const {
    std::call_once(dummy_once_, [this] { dummy_hash_ = hash(core::random_hex(16)); });
    return dummy_hash_;
}

bool PasswordHasher::verify(std::string_view stored_hash, std::string_view password) const {
    // crypto_pwhash_str_verify wants a NUL-terminated string; std::string provides it.
    std::string stored(stored_hash);
    return crypto_pwhash_str_verify(stored.c_str(), password.data(), password.size()) == 0;
}

bool PasswordHasher::needs_rehash(std::string_view stored_hash) const {
    std::string stored(stored_hash);
    return crypto_pwhash_str_needs_rehash(stored.c_str(), cost_.opslimit, cost_.memlimit) != 0;
}

}  // namespace parley::auth::internal

namespace parley::auth {

SecretKey load_or_create_secret_key(const std::string& data_dir) {
    internal::ensure_sodium();
    const std::string path = (std::filesystem::path(data_dir) / "secret.key").string();
    SecretKey key{};
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        randombytes_buf(key.data(), key.size());
        int wfd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (wfd < 0) throw std::runtime_error("cannot create " + path + ": " + internal::errno_text());
        bool ok = ::write(wfd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) && ::fsync(wfd) == 0;
        ::close(wfd);
        if (!ok) {
            ::unlink(path.c_str());
            throw std::runtime_error("cannot write " + path + ": " + internal::errno_text());
        }
        return key;
    }
    if (fd < 0) throw std::runtime_error("cannot read the instance secret key " + path + ": " + internal::errno_text());
    unsigned char buffer[33];  // one more than needed, to detect a longer file
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    ::close(fd);
    if (n != static_cast<ssize_t>(key.size())) {
        throw std::runtime_error("the instance secret key " + path + " must hold exactly 32 bytes");
    }
    std::memcpy(key.data(), buffer, key.size());
    sodium_memzero(buffer, sizeof buffer);
    return key;
}

}  // namespace parley::auth

namespace parley::auth::internal {

std::string seal(const SecretKey& key, std::string_view plaintext) {
    ensure_sodium();
    std::string out(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + plaintext.size(), '\0');
    auto* nonce = reinterpret_cast<unsigned char*>(out.data());
    randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(nonce + crypto_secretbox_NONCEBYTES, reinterpret_cast<const unsigned char*>(plaintext.data()),
                          plaintext.size(), nonce, key.data());
    return out;
}

std::string open_sealed(const SecretKey& key, std::string_view blob) {
    if (blob.size() < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) {
        throw std::runtime_error("sealed value is truncated");
    }
    const auto* nonce = reinterpret_cast<const unsigned char*>(blob.data());
    const auto* cipher = nonce + crypto_secretbox_NONCEBYTES;
    std::size_t cipher_len = blob.size() - crypto_secretbox_NONCEBYTES;
    std::string out(cipher_len - crypto_secretbox_MACBYTES, '\0');
    if (crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(out.data()), cipher, cipher_len, nonce,
                                   key.data()) != 0) {
        throw std::runtime_error("sealed value does not decrypt with the instance key");
    }
    return out;
}

}  // namespace parley::auth::internal
