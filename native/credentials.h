// How long a ticket cache's Kerberos credentials remain valid (see
// credentials.cc). Nothing here knows about N-API.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace remctl_node {

// Seconds until the credentials in ccache (absent: the default cache)
// expire; 0 once they have, -1 when that cannot be told.
int64_t CredentialsLifetimeSeconds(const std::optional<std::string>& ccache);

}  // namespace remctl_node
