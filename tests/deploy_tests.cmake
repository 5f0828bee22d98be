# Deployment files (deploy/: docker compose, Kubernetes, Dockerfile, examples) checked offline
# against the built binaries: every flag, environment variable and agent config key they pass
# must be one the binaries accept (read from their --help), the k8s server containers must have
# gRPC readiness/liveness probes and run non-root, and so on (tests/deploy/check_deploy.py).
# The second test breaks a copy of deploy/ in several ways and expects each to be caught.
# A script, not GoogleTest: what it checks is YAML and --help text. Exit 77 = skipped (no
# python3-yaml).
foreach(mode IN ITEMS check drift)
  if(mode STREQUAL "check")
    set(name deploy_files_match_binaries)
    set(extra "")
  else()
    set(name deploy_check_detects_drift)
    set(extra --expect-drift-detected)
  endif()
  add_test(NAME ${name}
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/deploy/check_deploy.sh ${extra} ${CMAKE_SOURCE_DIR}
            $<TARGET_FILE:modelfleet-server> $<TARGET_FILE:modelfleet-agent> $<TARGET_FILE:modelfleet>)
  set_tests_properties(${name} PROPERTIES LABELS deploy TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()

# The compose start-up sequence without docker (tests/deploy/compose_flow_live.sh): the compose
# server's command and environment, modelfleet-health, modelfleet-bootstrap (twice: idempotent)
# and an agent through the image's entry point enrolling with compose's agent.conf, against a
# private PostgreSQL 15.
add_test(NAME deploy_compose_flow_live
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/deploy/compose_flow_live.sh ${CMAKE_SOURCE_DIR}
          $<TARGET_FILE:modelfleet-server> $<TARGET_FILE:modelfleet-agent> $<TARGET_FILE:modelfleet>)
set_tests_properties(deploy_compose_flow_live PROPERTIES LABELS "deploy;e2e" TIMEOUT 300 SKIP_RETURN_CODE 77)
