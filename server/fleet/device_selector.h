// The device selector language: rollout targets (CreateRolloutRequest.target) and ListDevices
// filters. Same style as the ListVersions filter (server/registry/version_filter.h).
//
//   selector := "*" | term { AND term }               (AND in any case; "*" stands alone)
//   term     := field (= | !=) value
//             | field [not] in ( value { , value } )  (IN / NOT in any case; 1 to 64 values)
//             | numeric_field (= | != | < | <= | > | >=) integer
//   value    := string; for hardware_revision also a bare integer, taken as its text ("02" stays
//               "02"); for admission and deployment_step also a bare name
//   string   := double-quoted; \" and \\ are the only escapes
//   integer  := -?[0-9]+ (fits in int64)
//
// Fields (column of the `devices` table in brackets):
//   site                                 [site]               string
//   hardware_revision (alias hw_rev)     [hardware_revision]  string (or bare integer)
//   firmware_version  (alias firmware)   [firmware_version]   string
//   labels.<key>, key [A-Za-z0-9._-]{1,64}  [labels->>key]    string
//   sensor_rows, sensor_cols             [sensor_rows/cols]   integer, all six operators
// Only in ListDevices filters (SelectorKind::kDeviceFilter):
//   admission        = != in, not in: PREAUTHORIZED | PENDING | ACCEPTED | REJECTED |
//                    DECOMMISSIONED (bare or quoted, any case; stored upper case)
//   offline_for      < <= > >= only: seconds since last_seen, 0 to 3153600000 (100 years). A
//                    device never seen is offline forever: it matches > and >=, never < or <=.
//                    last_seen of a device that keeps checking in with nothing new is written
//                    only every status_refresh (30 min by default, fleet/write_behind.h), so
//                    offline_for is precise to that much.
//   running          = != "model@version" (exactly one '@', both sides non-empty): the model and
//                    version the device reports it runs
//   deployment_step  = != in, not in: ASSIGNED | DOWNLOADING | VERIFYING | INSTALLING |
//                    SELF_TESTING | ACTIVATED | FAILED | ROLLED_BACK | TIMED_OUT | CANCELLED
//                    (bare or quoted, any case): the step of the device's most recent
//                    deployment (highest deployments.id), compared with deployments.step as the
//                    upper-case name without the DEPLOYMENT_STEP_ prefix
//
// Missing values: a device without label <key> (or, for deployment_step, without any
// deployment) has no value. `=` and `in` never match it; `!=` and `not in` always match it
// ("the device does not have that value"). Other fields always have a value (attributes
// default to "" / 0).
//
// Field names are case-sensitive; AND, IN, NOT are not. "*" selects every device: restricting
// a rollout to ACCEPTED devices is the caller's job, not the selector's.
//
// Limits: at most 4096 bytes, 32 terms, 64 values per in-list. The text must be valid UTF-8
// without NUL bytes (so every string value is a valid text parameter).
//
// Errors: INVALID_ARGUMENT with the field the caller passes ("target" or "filter"), saying
// what was expected at which column (1-based, in bytes): "filter: unknown field 'color' at
// column 1".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "db/pool.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::fleet {

enum class SelectorKind { kRolloutTarget, kDeviceFilter };

inline constexpr size_t kMaxSelectorBytes = 4096;
inline constexpr size_t kMaxSelectorTerms = 32;
inline constexpr size_t kMaxSelectorListValues = 64;
inline constexpr int64_t kMaxOfflineForSeconds = 3153600000;  // 100 years

class DeviceSelector {
 public:
  // Matches nothing (Matches false, ToSql "FALSE"), e.g. as a placeholder member; only Parse
  // makes a useful selector.
  DeviceSelector() = default;

  // `field` names the request field in errors ("target" or "filter"). An empty or
  // all-whitespace text is INVALID_ARGUMENT ("is empty; use \"*\" for every device").
  static Expected<DeviceSelector> Parse(std::string_view text, SelectorKind kind,
                                        const std::string& field);

  // True for "*".
  bool MatchesEverything() const { return everything_; }

  // In memory, for the check-in hot path: does a device with these attributes match? Does not
  // allocate. Meant for kRolloutTarget selectors; a filter-only term (admission, offline_for,
  // running, deployment_step) cannot be decided from attributes and makes this return false.
  bool Matches(const v1::DeviceAttributes& attributes) const;

  // In SQL, for listing and counting: one parenthesised boolean expression (never NULL) over
  // the table alias `d` (devices), "TRUE" for "*". Values are appended to `params` as bound
  // parameters ($N numbering continues from params.size() + 1), never put into the SQL text, so
  // two selectors can share one `params` vector in one statement.
  // Strings bind as std::string, integers as int64_t (compared as $N::bigint).
  //   site = $1                  -> d.site = $1              (!= : <>, in: IN ($1, $2, ...))
  //   labels.k = v               -> COALESCE(d.labels->>$1 = $2, FALSE)
  //   labels.k != v              -> d.labels->>$1 IS DISTINCT FROM $2
  //   sensor_rows < n            -> d.sensor_rows < $1::bigint
  //   offline_for > n            -> (d.last_seen IS NULL OR d.last_seen < now() - make_interval(secs => $1))
  //   offline_for < n            -> (d.last_seen IS NOT NULL AND d.last_seen > now() - make_interval(secs => $1))
  //   running = "m@v"            -> (d.running_model = $1 AND d.running_version = $2)
  //   deployment_step = FAILED   -> COALESCE((SELECT dep.step FROM deployments dep WHERE
  //                                 dep.device_id = d.id ORDER BY dep.id DESC LIMIT 1) = $1, FALSE)
  std::string ToSql(std::vector<db::Param>& params) const;

  // The text as given to Parse.
  const std::string& text() const { return text_; }

  // The parsed form (public for tests and diagnostics).
  enum class Field {
    kSite,
    kHardwareRevision,
    kFirmwareVersion,
    kLabel,
    kSensorRows,
    kSensorCols,
    kAdmission,
    kOfflineFor,
    kRunning,
    kDeploymentStep,
  };
  enum class Op { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };
  struct Term {
    Field field;
    Op op;
    std::string key;                  // label key
    std::vector<std::string> values;  // string operands (one unless in / not in); running: model, version
    int64_t number = 0;               // numeric operand (sensor_rows, sensor_cols, offline_for)
  };
  const std::vector<Term>& terms() const { return terms_; }

 private:
  std::string text_;
  bool everything_ = false;
  std::vector<Term> terms_;
};

}  // namespace modelfleet::fleet
