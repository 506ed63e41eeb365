rule "batch" {
  match {
    namespaces = ["batch"]
  }
}
