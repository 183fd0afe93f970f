// Redaction before text leaves the device: each kind found (and look-alikes left alone), the
// same value gets the same placeholder, and restoring gives back the original exactly.
#include "llm/redaction.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace outpost {
namespace {

TEST(Redaction, EachKindIsReplacedAndRestored) {
  Redactor r;
  const std::string text =
      "Mail ada@example.co.uk or +44 20 7946 0958. Card 4111 1111 1111 1111, IBAN "
      "GB82 WEST 1234 5698 7654 32, server 192.168.1.20 and 2001:db8::8a2e:370:7334. "
      "Again: ada@example.co.uk";
  Redaction out = r.Redact(text);
  EXPECT_EQ(out.text,
            "Mail [EMAIL_1] or [PHONE_1]. Card [CARD_1], IBAN [IBAN_1], server [IP_1] and "
            "[IP_2]. Again: [EMAIL_1]");
  EXPECT_EQ(out.counts.at("EMAIL"), 2);
  EXPECT_EQ(out.counts.at("IP"), 2);
  EXPECT_EQ(Redactor::Restore(out.text, out), text);
  // The cloud's answer mentions placeholders in its own words.
  EXPECT_EQ(Redactor::Restore("I wrote to [EMAIL_1] about [CARD_1].", out),
            "I wrote to ada@example.co.uk about 4111 1111 1111 1111.");
}

TEST(Redaction, LookAlikesStay) {
  Redactor r;
  for (const char* text : {
           "Card 4111 1111 1111 1112 fails Luhn",  // not a valid card
           "version 1.2.3.4567 and 999.1.1.1",     // not IPv4
           "meet at 12:30:45 on 2026-11-24",       // time and date
           "order 123456 shipped",                 // short number
           "ratio 3:4 and std::vector<int>",       // not IPv6
       }) {
    Redaction out = r.Redact(text);
    EXPECT_EQ(out.text, text);
    EXPECT_TRUE(out.counts.empty()) << text;
  }
}

TEST(Redaction, ErrsOnTheSideOfPrivacy) {
  // An IBAN that fails its check digits is not reported as one, but its digits still look
  // like a phone number: over-redacting is the safe mistake.
  Redaction out = Redactor().Redact("GB82 WEST 1234 5698 7654 33");
  EXPECT_EQ(out.counts.count("IBAN"), 0u);
  EXPECT_EQ(out.text, "GB82 WEST [PHONE_1]");
}

TEST(Redaction, CustomRulesComeFirstAndUserPlaceholdersAreLeftAlone) {
  Redactor r({{"EMPLOYEE", R"(EMP-\d{6})"}, {"PROJECT", R"(project (\w+))"}});
  const std::string text = "[EMAIL_1] is literal; EMP-123456 on project Falcon mailed bob@x.org";
  Redaction out = r.Redact(text);
  EXPECT_EQ(out.text, "[EMAIL_1] is literal; [EMPLOYEE_1] on [PROJECT_1] mailed [EMAIL_2]");
  EXPECT_EQ(Redactor::Restore(out.text, out), text);
  EXPECT_THROW(Redactor(std::vector<RedactionRule>{{"bad kind", "x"}}), Error);
  EXPECT_THROW(Redactor(std::vector<RedactionRule>{{"OK", "(unclosed"}}), Error);
}

}  // namespace
}  // namespace outpost
