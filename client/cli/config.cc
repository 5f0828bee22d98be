#include "cli/config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>

namespace modelfleet::cli {

namespace {

constexpr const char* kKnownKeys[] = {"server", "token", "tls_ca", "insecure", "output"};

std::string Trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t\r");
  return s.substr(begin, end - begin + 1);
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Where a setting came from, for error messages.
std::string FileSource(const std::filesystem::path& file, const ConfigEntry& e, const std::string& key) {
  return file.string() + ":" + std::to_string(e.line) + ": " + key;
}

// A bad setting: INVALID_ARGUMENT whose message already names where it came from.
Status ConfigError(std::string message) { return Status(StatusCode::kInvalidArgument, std::move(message)); }

}  // namespace

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  };
}

std::optional<bool> ParseBool(const std::string& text) {
  const std::string t = Lower(Trim(text));
  if (t == "1" || t == "true" || t == "yes" || t == "on") return true;
  if (t.empty() || t == "0" || t == "false" || t == "no" || t == "off") return false;
  return std::nullopt;
}

std::optional<OutputFormat> ParseOutputFormat(const std::string& text) {
  const std::string t = Lower(Trim(text));
  if (t == "table") return OutputFormat::kTable;
  if (t == "json") return OutputFormat::kJson;
  return std::nullopt;
}

Expected<std::map<std::string, ConfigEntry>> ParseConfigFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return Fail(NotFound("config file " + path.string() + " cannot be read"));
  std::map<std::string, ConfigEntry> entries;
  std::string raw;
  int line = 0;
  while (std::getline(in, raw)) {
    ++line;
    const std::string text = Trim(raw);
    if (text.empty() || text[0] == '#') continue;
    const std::string where = path.string() + ":" + std::to_string(line);
    const auto eq = text.find('=');
    if (eq == std::string::npos) {
      return Fail(ConfigError(where + ": expected `key = value`, got '" + text + "'"));
    }
    const std::string key = Trim(text.substr(0, eq));
    std::string value = Trim(text.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    if (std::find(std::begin(kKnownKeys), std::end(kKnownKeys), key) == std::end(kKnownKeys)) {
      return Fail(ConfigError(where + ": unknown key '" + key +
                              "' (known: server, token, tls_ca, insecure, output)"));
    }
    if (auto it = entries.find(key); it != entries.end()) {
      return Fail(ConfigError(where + ": " + key + ": repeated (first set on line " +
                              std::to_string(it->second.line) + ")"));
    }
    entries[key] = ConfigEntry{value, line};
  }
  return entries;
}

std::optional<std::filesystem::path> ConfigFilePath(const FlagValues& flags, const EnvLookup& env,
                                                    bool* explicit_path) {
  *explicit_path = true;
  if (flags.config) return std::filesystem::path(*flags.config);
  if (auto v = env("MODELFLEET_CONFIG")) return std::filesystem::path(*v);
  *explicit_path = false;
  if (auto xdg = env("XDG_CONFIG_HOME")) return std::filesystem::path(*xdg) / "modelfleet" / "config";
  if (auto home = env("HOME")) return std::filesystem::path(*home) / ".config" / "modelfleet" / "config";
  return std::nullopt;
}

Expected<Settings> ResolveSettings(const FlagValues& flags, const EnvLookup& env) {
  Settings s;
  bool explicit_path = false;
  std::map<std::string, ConfigEntry> file;
  if (auto path = ConfigFilePath(flags, env, &explicit_path)) {
    std::error_code ec;
    if (explicit_path || std::filesystem::exists(*path, ec)) {
      MF_ASSIGN_OR_RETURN(file, ParseConfigFile(*path));
      s.config_file = *path;
    }
  }

  // A string setting: flag, then environment, then file.
  auto pick = [&](const std::optional<std::string>& flag, const char* env_name, const char* key,
                  std::string* out, std::string* source) {
    if (flag) {
      *out = *flag;
      *source = std::string("--") + key;
      return true;
    }
    if (auto v = env(env_name)) {
      *out = *v;
      *source = env_name;
      return true;
    }
    if (auto it = file.find(key); it != file.end()) {
      *out = it->second.value;
      *source = FileSource(s.config_file, it->second, key);
      return true;
    }
    return false;
  };

  std::string source;
  pick(flags.server, "MODELFLEET_SERVER", "server", &s.server, &source);
  if (s.server.empty()) return Fail(ConfigError(source + ": the server address is empty"));
  pick(flags.token, "MODELFLEET_TOKEN", "token", &s.token, &source);
  if (pick(flags.tls_ca, "MODELFLEET_TLS_CA", "tls_ca", &s.tls_ca, &source) && !flags.tls_ca &&
      !env("MODELFLEET_TLS_CA") && std::filesystem::path(s.tls_ca).is_relative()) {
    s.tls_ca = (s.config_file.parent_path() / s.tls_ca).string();
  }

  if (flags.insecure) {
    s.insecure = *flags.insecure;
  } else {
    std::string text;
    if (pick(std::nullopt, "MODELFLEET_INSECURE", "insecure", &text, &source)) {
      auto b = ParseBool(text);
      if (!b) return Fail(ConfigError(source + ": '" + text + "' is not true or false"));
      s.insecure = *b;
    }
  }

  std::string output;
  if (pick(flags.output, "MODELFLEET_OUTPUT", "output", &output, &source)) {
    auto f = ParseOutputFormat(output);
    if (!f) return Fail(ConfigError(source + ": '" + output + "' is not table or json"));
    s.output = *f;
  }

  if (file.count("token") != 0) {
    struct stat st {};
    if (::stat(s.config_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      std::cerr << "modelfleet: warning: " << s.config_file.string()
                << " holds a token but is readable by others (chmod 600 it)\n";
    }
  }
  return s;
}

}  // namespace modelfleet::cli
