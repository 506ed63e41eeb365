class "gold" {
  io {
    device = "8:0"
    weight = "heavy"
  }
}
