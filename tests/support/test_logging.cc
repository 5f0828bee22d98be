#include "test_logging.h"

#include <spdlog/spdlog.h>

namespace modelfleet::testing {

void CreateLoggerRegistry() { spdlog::default_logger_raw(); }

}  // namespace modelfleet::testing
