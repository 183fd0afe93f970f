// The event schema and request ids (core/logging.h).
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "core/logging.h"

namespace outpost {
namespace {

TEST(LogEvent, SchemaKeysCannotBeOverwrittenByFields) {
  LogEvent e{LogSeverity::kWarn,
             "monitoring",
             "drift",
             "drift detected",
             {{"model", "m"}, {"msg", "forged"}, {"level", "info"}, {"evidence", {{"psi", 0.3}}}}};
  auto j = e.ToJson();
  EXPECT_EQ(j["level"], "warn");
  EXPECT_EQ(j["component"], "monitoring");
  EXPECT_EQ(j["event"], "drift");
  EXPECT_EQ(j["msg"], "drift detected");
  EXPECT_EQ(j["msg_"], "forged");
  EXPECT_EQ(j["level_"], "info");
  EXPECT_EQ(j["model"], "m");
  EXPECT_EQ(j["evidence"]["psi"], 0.3);
  EXPECT_FALSE(j.contains("request_id"));
  EXPECT_FALSE(j.contains("time"));  // the logger or the outbox adds it
}

TEST(RequestId, ScopesNestAndStayOnTheirThread) {
  EXPECT_EQ(CurrentRequestId(), "");
  {
    RequestIdScope outer("outer-1");
    EXPECT_EQ(LogEvent{}.ToJson()["request_id"], "outer-1");
    {
      RequestIdScope inner("inner-2");
      EXPECT_EQ(CurrentRequestId(), "inner-2");
      std::thread([] { EXPECT_EQ(CurrentRequestId(), ""); }).join();
    }
    EXPECT_EQ(CurrentRequestId(), "outer-1");
    // A field names another request explicitly (a batch run for someone else).
    EXPECT_EQ((LogEvent{LogSeverity::kInfo, "runtime", "x", "", {{"request_id", "other"}}}
                   .ToJson()["request_id"]),
              "other");
  }
  EXPECT_EQ(CurrentRequestId(), "");
}

TEST(RequestId, ClientIdsAreTakenOnlyWhenSafe) {
  EXPECT_EQ(AcceptRequestId("abc-123_x.y:z"), "abc-123_x.y:z");
  for (std::string bad : {std::string(), std::string("a b"), std::string("a\"b"),
                          std::string("line\nbreak"), std::string(65, 'x'), std::string("é")}) {
    std::string id = AcceptRequestId(bad);
    EXPECT_NE(id, bad);
    EXPECT_EQ(id.size(), 16u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  }
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(NewRequestId());
  EXPECT_EQ(ids.size(), 10000u);
}

}  // namespace
}  // namespace outpost
