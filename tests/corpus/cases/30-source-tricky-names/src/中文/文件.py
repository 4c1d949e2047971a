print('中文')
