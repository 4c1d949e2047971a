kept: /dist is anchored
