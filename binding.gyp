{
  "targets": [
    {
      "target_name": "remctl",
      "sources": [
        "native/addon.cc",
        "native/connection.cc",
        "native/convert.cc",
        "native/engine.cc",
        "native/handle.cc",
        "native/socket.cc",
        "native/tcp_stats.cc",
        "native/credentials.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/libremctl.mjs --cflags)"
      ],
      "libraries": ["<!@(node scripts/libremctl.mjs --libs)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
