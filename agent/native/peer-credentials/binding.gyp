{
  "targets": [
    {
      "target_name": "peer_credentials",
      "sources": ["peer-credentials.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
