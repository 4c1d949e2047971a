print('full')
