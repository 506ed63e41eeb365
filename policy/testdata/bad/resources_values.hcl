class "a" {
  pids {
    max = 0
  }
  memory {
    high = "150%"
  }
  cpu {
    weight = 20000
    max    = "-1"
  }
}

class "b" {
  memory {
    high = "12XB"
  }
  cpu {
    weigth = 5
  }
}

class "c" {
  pids {
    max = 1.5
  }
  pids {
    max = 10
  }
  cpu {
  }
}
