// Channel settings every device-side client shares (the agent and the fleet simulator), so the
// simulator behaves as the agent does when a server restarts.
#pragma once

#include <grpcpp/support/channel_arguments.h>

namespace modelfleet::client {

// gRPC's defaults kept a device away from a restarted server for 6-17 s: its reconnect backoff
// grows to 120 s (1 s first, x1.6 each time), and a failed connection also asks the DNS
// resolver again, which by default waits 30 s between resolutions (a re-resolution is what
// brings the channel out of its failure state, even for an IP address). Here attempts start at
// 250 ms and never wait more than 2 s (gRPC adds +-20% jitter, which spreads a fleet's
// reconnections), and names are resolved again at most once a second: a device is back within
// a second or two of its server. An attempt to a server that is down costs a refused TCP
// connection (and at most one DNS query a second), cheap for both sides.
inline void SetDeviceReconnectBackoff(grpc::ChannelArguments& args) {
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 1000);
}

}  // namespace modelfleet::client
