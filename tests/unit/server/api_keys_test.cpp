#include "server/api_keys.h"

#include <gtest/gtest.h>

#include "server/hmac.h"

namespace kvault {
namespace {

const std::string kSecret(32, 's');

TEST(ApiKeysTest, WithoutKeysEveryoneIsTheAnonymousTenant) {
  ApiKeys keys;
  EXPECT_FALSE(keys.enabled());
  auto t = keys.Authenticate("", "");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t.value(), "");
}

TEST(ApiKeysTest, EitherHeaderWorksAndEachKeyIsItsOwnStableTenant) {
  ApiKeys keys({"alpha-key", "beta-key"}, kSecret);
  auto a1 = keys.Authenticate("alpha-key", "");
  auto a2 = keys.Authenticate("", "Bearer alpha-key");
  auto b = keys.Authenticate("beta-key", "");
  ASSERT_TRUE(a1.ok() && a2.ok() && b.ok());
  EXPECT_EQ(a1.value(), a2.value());
  EXPECT_NE(a1.value(), b.value());
  EXPECT_FALSE(a1.value().empty());
  // Key order does not matter: the tenant comes from the key itself (and the secret).
  EXPECT_EQ(ApiKeys({"beta-key", "alpha-key"}, kSecret).Authenticate("alpha-key", "").value(), a1.value());
  // The tenant does not reveal the key.
  EXPECT_EQ(a1.value().find("alpha"), std::string::npos);
}

TEST(ApiKeysTest, MissingOrWrongKeysAreUnauthenticatedWithoutEchoingThem) {
  ApiKeys keys({"alpha-key", "team=named-key"}, kSecret);
  for (auto [x, auth] : {std::pair<std::string, std::string>{"", ""},
                         {"alpha-ke", ""},
                         {"alpha-key2", ""},
                         {"team=named-key", ""},  // the entry is not the key
                         {"", "Bearer wrong-secret"},
                         {"", "Basic alpha-key"}}) {
    auto t = keys.Authenticate(x, auth);
    ASSERT_FALSE(t.ok()) << x << " / " << auth;
    EXPECT_EQ(t.status().code(), Status::Code::kUnauthenticated);
    EXPECT_EQ(t.status().message().find("wrong-secret"), std::string::npos);
    EXPECT_EQ(t.status().message().find("alpha-ke"), std::string::npos);
  }
}

// A bare key's tenant id is keyed by the installation's secret: the same key and secret give
// the same id (restarts), another secret another id, and without the secret the id cannot be
// recomputed from a guessed key.
TEST(ApiKeysTest, DerivedTenantIsAKeyedHashOfTheKey) {
  const std::string id = ApiKeys::DerivedTenant("alpha-key", kSecret);
  EXPECT_EQ(id, ApiKeys::DerivedTenant("alpha-key", kSecret));
  EXPECT_NE(id, ApiKeys::DerivedTenant("alpha-key", std::string(32, 't')));
  EXPECT_NE(id, ApiKeys::DerivedTenant("alpha-kez", kSecret));
  ASSERT_EQ(id.size(), 4u + 16u) << id;
  EXPECT_EQ(id.rfind("key-", 0), 0u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 4), std::string::npos) << id;
  // HMAC-SHA256(secret, "kvault-tenant-id-v2" NUL key), its first 8 bytes.
  const std::string message = std::string("kvault-tenant-id-v2") + '\0' + "alpha-key";
  EXPECT_EQ(id, "key-" + DigestHex(HmacSha256(kSecret, message), 8));
  EXPECT_EQ(ApiKeys({"alpha-key"}, kSecret).Authenticate("alpha-key", "").value(), id);
  // No secret given: a random one for this process, never an unkeyed id.
  EXPECT_NE(ApiKeys({"alpha-key"}).Authenticate("alpha-key", "").value(),
            ApiKeys({"alpha-key"}).Authenticate("alpha-key", "").value());
}

TEST(ApiKeysTest, NamedTenantsAndWhenAnEntryIsSplit) {
  struct Case {
    std::string entry, name, key;
  };
  for (const auto& c : std::vector<Case>{
           {"team-a=k1", "team-a", "k1"},
           {"A.b_9-z=k=with=equals", "A.b_9-z", "k=with=equals"},
           {"plain-key", "", "plain-key"},
           {"c2VjcmV0a2V5==", "", "c2VjcmV0a2V5=="},  // base64 padding never splits
           {"c2VjcmV0a2V=", "", "c2VjcmV0a2V="},
           {"has space=k", "", "has space=k"},  // not a name: the whole entry is the key
           {"=k", "", "=k"},
           {std::string(64, 'n') + "=k", std::string(64, 'n'), "k"},
           {std::string(65, 'n') + "=k", "", std::string(65, 'n') + "=k"},
       }) {
    const ApiKeyEntry e = ApiKeys::ParseEntry(c.entry);
    EXPECT_EQ(e.tenant_name, c.name) << c.entry;
    EXPECT_EQ(e.key, c.key) << c.entry;
  }
  // Two keys of one named tenant (key rotation): the same tenant; a bare key keeps its own.
  ApiKeys keys({"team-a=old-key", "team-a=new-key", "bare-key"}, kSecret);
  EXPECT_EQ(keys.Authenticate("old-key", "").value(), "team-a");
  EXPECT_EQ(keys.Authenticate("", "Bearer new-key").value(), "team-a");
  EXPECT_EQ(keys.Authenticate("bare-key", "").value(), ApiKeys::DerivedTenant("bare-key", kSecret));
  // Admin keys are keys as written.
  ApiKeys admin({"adm=in"}, {}, ApiKeys::Entries::kKeysOnly);
  EXPECT_TRUE(admin.Authenticate("adm=in", "").ok());
  EXPECT_FALSE(admin.Authenticate("in", "").ok());
}

TEST(ApiKeysTest, CheckRefusesReservedNamesAndAKeyOfTwoTenants) {
  EXPECT_TRUE(ApiKeys::Check({"a=k1", "a=k2", "k3", "k3", ""}).ok());
  const Status reserved = ApiKeys::Check({"key-0123456789abcdef=k1"});
  EXPECT_EQ(reserved.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(reserved.message().find("reserved"), std::string::npos);
  const Status twice = ApiKeys::Check({"a=shared-key", "b=shared-key"});
  EXPECT_EQ(twice.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(twice.message().find("shared-key"), std::string::npos) << "never the key";
  EXPECT_FALSE(ApiKeys::Check({"a=shared-key", "shared-key"}).ok());
}

// A space or newline pasted with a key is refused at start-up; the message names no key.
TEST(ApiKeysTest, CheckRefusesEntriesWithLeadingOrTrailingWhitespace) {
  for (const std::string entry : {" secret-key", "secret-key ", "secret-key\n", "team=secret-key ", "team= secret-key",
                                  "\tteam=secret-key"}) {
    const Status s = ApiKeys::Check({entry});
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << "'" << entry << "'";
    EXPECT_EQ(s.message().find("secret-key"), std::string::npos) << s.message();
  }
  EXPECT_NE(ApiKeys::Check({"team= secret-key"}).message().find("'team'"), std::string::npos);
  EXPECT_TRUE(ApiKeys::Check({"in side=key"}).ok());  // inside is the key's own business
}

// RFC 4231's HMAC-SHA256 test cases 1, 2 and 6 (a key longer than a block), and FIPS 180-2's
// "abc": the vendored SHA-256 and the HMAC built on it.
TEST(HmacTest, KnownAnswers) {
  EXPECT_EQ(DigestHex(Sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(DigestHex(HmacSha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(DigestHex(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(DigestHex(HmacSha256(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_EQ(DigestHex(Sha256("abc"), 4), "ba7816bf");
}

}  // namespace
}  // namespace kvault
