"""meta_spider.wrapper"""
