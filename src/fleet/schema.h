// The fleet database's tables, created or brought up to date when a server starts. Replicas
// starting together serialize on a PostgreSQL advisory lock; times are Unix milliseconds;
// JSON documents are text; booleans are 0/1 integers, so one statement serves both engines.
#pragma once

#include "fleet/database.h"

namespace outpost::fleet {

constexpr int kSchemaVersion = 2;

void Migrate(Database& db);

}  // namespace outpost::fleet
