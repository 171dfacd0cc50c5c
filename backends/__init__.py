"""meta_spider.backends"""
