// Timestamps between PostgreSQL and protobuf. Columns are read as integer microseconds since
// the Unix epoch with MF_EPOCH_MICROS("col") in the SELECT list.
#pragma once

#include <cstdint>
#include <optional>

#include <google/protobuf/timestamp.pb.h>

#define MF_EPOCH_MICROS(col) "(extract(epoch from " col ") * 1000000)::bigint"

namespace modelfleet {

inline void SetTimestamp(std::optional<int64_t> micros, google::protobuf::Timestamp* out) {
  if (!micros) return;
  int64_t seconds = *micros / 1000000;
  int64_t rem = *micros % 1000000;
  if (rem < 0) {
    rem += 1000000;
    seconds -= 1;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rem * 1000));
}

}  // namespace modelfleet
