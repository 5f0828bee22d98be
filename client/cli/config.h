// Connection and output settings of the `modelfleet` CLI, from (highest precedence first)
// command-line flags, environment variables, a config file, and defaults.
//
// Environment: MODELFLEET_SERVER, MODELFLEET_TOKEN, MODELFLEET_TLS_CA, MODELFLEET_INSECURE,
// MODELFLEET_OUTPUT, and MODELFLEET_CONFIG (the config file's path).
//
// Config file: --config, else $MODELFLEET_CONFIG, else $XDG_CONFIG_HOME/modelfleet/config, else
// ~/.config/modelfleet/config. A file named by --config or MODELFLEET_CONFIG must exist; the
// default one may be absent. Format: one `key = value` per line, `#` starts a comment line,
// blank lines are ignored, a value may be wrapped in double quotes. Keys: server, token,
// tls_ca (relative paths are relative to the file's directory), insecure (true/false, yes/no,
// on/off, 1/0), output (table/json). An unknown key, a line without `=`, a repeated key or a
// bad value is an error naming the file, the line and the key.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "modelfleet/status.h"

namespace modelfleet::cli {

enum class OutputFormat { kTable, kJson };

struct Settings {
  std::string server = "127.0.0.1:7443";  // host:port
  std::string token;                      // bearer token
  std::string tls_ca;                     // PEM file of the CA that signed the server's certificate
  bool insecure = false;                  // plaintext gRPC
  OutputFormat output = OutputFormat::kTable;
  std::filesystem::path config_file;  // the file that was read (empty: none)
  // How tables are shown (table output only); from the command line and the terminal, never
  // from the environment's MODELFLEET_* or the config file.
  bool wide = false;       // --wide: every column (`versions list`: every metric), nothing cut
  size_t table_width = 0;  // tables are fitted to this many columns; 0: never cut (output.h)
};

// What the command line said; nullopt = the flag was not given.
struct FlagValues {
  std::optional<std::string> server, token, tls_ca, output, config;
  std::optional<bool> insecure;
};

// Looks up an environment variable; nullopt when unset or empty.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnvironment();

// One `key = value` of a config file, with its line number for error messages.
struct ConfigEntry {
  std::string value;
  int line = 0;
};
// Parses a config file. Errors: NOT_FOUND (cannot be read), INVALID_ARGUMENT
// ("<file>:<line>: ..." for a malformed line, an unknown or repeated key).
Expected<std::map<std::string, ConfigEntry>> ParseConfigFile(const std::filesystem::path& path);

// Where the config file is looked for (see the header comment); nullopt if neither
// XDG_CONFIG_HOME nor HOME is set. `explicit_path` is set when the flag or MODELFLEET_CONFIG
// named it (then it must exist).
std::optional<std::filesystem::path> ConfigFilePath(const FlagValues& flags, const EnvLookup& env,
                                                    bool* explicit_path);

// Merges flags > environment > config file > defaults.
// Errors: INVALID_ARGUMENT naming the source and key of a bad value (e.g.
// "/home/a/.config/modelfleet/config:3: insecure: 'maybe' is not true or false"), NOT_FOUND for an
// explicitly named config file that does not exist.
Expected<Settings> ResolveSettings(const FlagValues& flags, const EnvLookup& env);

// "true"/"yes"/"on"/"1" -> true, "false"/"no"/"off"/"0"/"" -> false (case-insensitive).
std::optional<bool> ParseBool(const std::string& text);
std::optional<OutputFormat> ParseOutputFormat(const std::string& text);

}  // namespace modelfleet::cli
