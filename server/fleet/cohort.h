// Deterministic, sticky cohorts: a device's bucket in a rollout is a pure function of
// (device id, rollout id), the same on every replica and in SQL, so pausing and resuming keeps
// the same devices, raising a stage from 10% to 50% keeps the first 10% inside, and devices
// enrolling later join in their own bucket.
//
// bucket = first 60 bits of SHA-256("<device_id>:<rollout_id>") / 2^60, in [0, 1).
// kBucketSql computes exactly the same value in PostgreSQL for columns named by the caller.
#pragma once

#include <charconv>
#include <string>

#include "modelfleet/crypto.h"

namespace modelfleet::fleet {

inline double CohortBucket(const std::string& device_id, const std::string& rollout_id) {
  std::string hex = Sha256Hex(device_id + ":" + rollout_id);
  int64_t top = 0;
  std::from_chars(hex.data(), hex.data() + 15, top, 16);
  return static_cast<double>(top) / 1152921504606846976.0;  // 2^60
}

// SQL expression of CohortBucket for `device_id_sql` and `rollout_id_sql` (text expressions).
inline std::string CohortBucketSql(const std::string& device_id_sql, const std::string& rollout_id_sql) {
  return "(('x' || substr(encode(sha256(convert_to(" + device_id_sql + " || ':' || " + rollout_id_sql +
         ", 'UTF8')), 'hex'), 1, 15))::bit(60)::bigint::float8 / 1152921504606846976.0)";
}

}  // namespace modelfleet::fleet
