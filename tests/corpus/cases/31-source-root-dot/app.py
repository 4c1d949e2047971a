print('dot')
