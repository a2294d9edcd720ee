# Routes may reference blocks declared in any other file of the directory.
route "messages" {
  paths   = ["/v1/messages"]
  methods = ["POST"]
  pool    = "main"
  policy  = "team"
}
