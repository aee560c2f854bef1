{
  "targets": [
    {
      "target_name": "mp_native",
      "sources": ["mp_native.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "conditions": [
        ["OS=='linux'", { "libraries": ["-lrt", "-lpthread", "-ldl"] }]
      ]
    }
  ]
}
