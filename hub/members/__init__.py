"""Grid members (grid workers, party members) and the grids each is responsible for."""
