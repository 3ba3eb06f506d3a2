"""Applications built on the library: the demo and the speed benchmark behind `flowdeblur bench`."""
