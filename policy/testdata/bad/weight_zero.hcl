class "bronze" {
  io {
    device = "8:0"
    weight = 0
  }
}
