"""meta_spider.native"""
