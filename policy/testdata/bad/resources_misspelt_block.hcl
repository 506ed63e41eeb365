class "a" {
  pid {
    max = 10
  }
}
