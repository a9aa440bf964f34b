#include "auth/internal/crypto.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "core/ids.h"

namespace parley::auth::internal {
namespace {

TEST(Crypto, Sha256KnownVector) {
    EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Crypto, PasswordHashVerify) {
    PasswordHasher hasher(PasswordCost::minimal());
    std::string hash = hasher.hash("correct horse");
    EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u);
    EXPECT_TRUE(hasher.verify(hash, "correct horse"));
    EXPECT_FALSE(hasher.verify(hash, "correct horsE"));
    EXPECT_FALSE(hasher.verify("not a hash", "correct horse"));
    EXPECT_NE(hasher.hash("correct horse"), hash);  // salted
    EXPECT_FALSE(hasher.needs_rehash(hash));
    EXPECT_TRUE(PasswordHasher(PasswordCost{PasswordCost::minimal().opslimit + 1, PasswordCost::minimal().memlimit})
                    .needs_rehash(hash));
    EXPECT_FALSE(hasher.verify(hasher.dummy_hash(), ""));
}

TEST(Crypto, SealRoundTripAndTamper) {
    SecretKey key{};
    key[0] = 7;
    std::string sealed = seal(key, "s3cret-value");
    EXPECT_EQ(sealed.find("s3cret"), std::string::npos);
    EXPECT_EQ(open_sealed(key, sealed), "s3cret-value");
    std::string tampered = sealed;
    tampered.back() ^= 1;
    EXPECT_THROW(open_sealed(key, tampered), std::runtime_error);
    SecretKey other{};
    EXPECT_THROW(open_sealed(other, sealed), std::runtime_error);
    EXPECT_THROW(open_sealed(key, "short"), std::runtime_error);
}

TEST(Crypto, SecretKeyFileCreatedPrivateAndReloaded) {
    auto dir = std::filesystem::temp_directory_path() / ("parley-key-" + core::random_hex(6));
    std::filesystem::create_directories(dir);
    SecretKey first = load_or_create_secret_key(dir.string());
    struct stat st {};
    ASSERT_EQ(::stat((dir / "secret.key").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(st.st_size, 32);
    EXPECT_EQ(load_or_create_secret_key(dir.string()), first);

    std::ofstream(dir / "secret.key", std::ios::trunc) << "too short";
    EXPECT_THROW(load_or_create_secret_key(dir.string()), std::runtime_error);
    if (::geteuid() != 0) {  // root reads anything
        std::filesystem::permissions(dir / "secret.key", std::filesystem::perms::none);
        EXPECT_THROW(load_or_create_secret_key(dir.string()), std::runtime_error);
    }
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace parley::auth::internal
