device "data" {
  path = "8:0"
}

class "beyond" {
  io {
    device     = "data"
    write_bps  = 18446744073709551615
    read_bps   = "18446744073709551615"
    write_iops = 4294967396
    read_iops  = "4294967296"
  }
  pids {
    max = 4194305
  }
}

annotations {
  enabled        = true
  max_write_iops = 4294967296
}
